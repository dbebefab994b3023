//! The scenario, told step by step. The demo prints it; the tests run it silently and
//! check the outcome.

use chrono::Duration;
use diesel_outbox::{BoxError, Error, ModelWrites};

use super::check::Convergence;
use super::models::{DemoSql, Organization, User};
use super::Deployment;

/// Runs the story on a deployment with the cells `eu` and `us`, telling it through
/// `say`, and returns the final check.
pub fn run_story<C>(
    world: &mut Deployment<C>,
    say: &mut dyn FnMut(&str),
) -> Result<Convergence, BoxError>
where
    C: DemoSql,
    User: ModelWrites<C>,
    Organization: ModelWrites<C>,
{
    say("1. Control creates three users. Each lists the cells it belongs to; saving it writes one");
    say("   outbox row per cell, and the flush after commit delivers it there.");
    world.save_user(&User::new(1, "Ada", &["eu"]))?;
    world.save_user(&User::new(2, "Bob", &["eu", "us"]))?;
    world.save_user(&User::new(3, "Carol", &["us"]))?;
    show_users(world, say)?;

    say("2. Each cell creates an organization with members. The cell's outbox tells control,");
    say("   which keeps a mapping of every organization and the cell it lives in.");
    world.save_organization(
        "eu",
        &Organization {
            id: 10,
            name: "Acme".into(),
        },
        &[1, 2],
    )?;
    world.save_organization(
        "us",
        &Organization {
            id: 20,
            name: "Globex".into(),
        },
        &[2, 3],
    )?;
    show_mappings(world, say)?;

    say("3. Bob is renamed in control: both of his cells see the new name.");
    world.save_user(&User::new(2, "Robert", &["eu", "us"]))?;
    show_users(world, say)?;

    say("4. Globex is renamed in its cell: control's mapping follows.");
    world.save_organization(
        "us",
        &Organization {
            id: 20,
            name: "Globex Corp".into(),
        },
        &[],
    )?;
    show_mappings(world, say)?;

    say("5. The us cell goes down (its service stops), and Robert is renamed Bobby meanwhile.");
    world.cut("us")?;
    world.save_user(&User::new(2, "Bobby", &["eu", "us"]))?;
    let waiting = world.control.conn.outbox_rows()?;
    say("   eu got the change at once. The delivery to us failed; its row stays in control's");
    say(&format!(
        "   outbox ({waiting} row waiting) and backs off: 2 s, then 4 s, ... up to an hour."
    ));
    show_users(world, say)?;
    world.advance(Duration::seconds(3));
    let report = world.drain()?;
    say(&format!(
        "   3 s later the periodic drain retries it while us is still down: {} delivered, {} failed.",
        report.delivered,
        report.failures.len()
    ));
    world.restore("us")?;
    world.advance(Duration::seconds(5));
    let report = world.drain()?;
    say(&format!(
        "   us is back; once the backoff has passed the drain delivers {} row(s): us catches up.",
        report.delivered
    ));
    show_users(world, say)?;

    say("6. Acme is deleted in eu. The flush after commit finds it gone, records a tombstone in");
    say("   control, and control drops its mapping.");
    world.delete_organization("eu", 10)?;
    show_mappings(world, say)?;

    say("7. Carol is deleted in control. Control's flush finds her gone, records a tombstone in");
    say("   us, and us deletes her replica and every membership pointing at it.");
    world.delete_user(3)?;
    show_users(world, say)?;

    let check = world.check()?;
    say("8. The check: every replica against its source, in both directions.");
    say(&format!(
        "   {} user replicas and {} organizations compared; {} outbox rows left; tombstones in control: {:?}, in the cells: {:?}.",
        check.user_replicas,
        check.organizations,
        check.outbox_rows,
        check.control_tombstones,
        check.cell_tombstones
    ));
    if check.converged() {
        say("   Converged: every replica equals its source and every outbox is empty.");
    } else {
        for problem in &check.problems {
            say(&format!("   NOT CONVERGED: {problem}"));
        }
    }
    Ok(check)
}

fn show_users<C: DemoSql>(
    world: &mut Deployment<C>,
    say: &mut dyn FnMut(&str),
) -> Result<(), Error> {
    for (name, silo) in &mut world.cells {
        let names: Vec<String> = silo
            .conn
            .user_replicas()?
            .into_iter()
            .map(|u| u.name)
            .collect();
        say(&format!("   {name} has the users: {}", names.join(", ")));
    }
    Ok(())
}

fn show_mappings<C: DemoSql>(
    world: &mut Deployment<C>,
    say: &mut dyn FnMut(&str),
) -> Result<(), Error> {
    let mappings = world.control.conn.organization_mappings()?;
    let lines: Vec<String> = mappings
        .into_iter()
        .map(|m| format!("{} in {}", m.name, m.cell_name))
        .collect();
    say(&format!(
        "   control maps: {}",
        if lines.is_empty() {
            "nothing".into()
        } else {
            lines.join(", ")
        }
    ));
    Ok(())
}
