//! The hybrid-cloud scenario end to end, on SQLite files and on PostgreSQL schemas (one
//! control, two cells): convergence over signed HTTP (three services on loopback) and
//! through direct connections, a cell whose server is down (its shards alone back off), a
//! cell that fails its first connections, and hooks that are idempotent.

use chrono::Duration;
use diesel_outbox::{
    CellReplicationHooks, ControlReplicationHooks, JsonPayload, ModelWrites, OutboxTable,
    ReplicationContext,
};
use diesel_outbox_examples::hybrid::{
    run_story, DemoSql, Deployment, Organization, OrganizationMapping, SiloUrls, User, UserReplica,
};

/// Fresh databases for one control and the cells `eu` and `us`.
trait Silos {
    type Conn: DemoSql;
    fn urls(&self) -> SiloUrls;
}

struct SqliteSilos {
    dbs: Vec<diesel_outbox_tests::SqliteDb>,
}

impl SqliteSilos {
    fn new() -> Self {
        SqliteSilos {
            dbs: (0..3)
                .map(|_| diesel_outbox_tests::SqliteDb::new())
                .collect(),
        }
    }
}

impl Silos for SqliteSilos {
    type Conn = diesel::SqliteConnection;
    fn urls(&self) -> SiloUrls {
        SiloUrls {
            control: self.dbs[0].url(),
            cells: vec![
                ("eu".into(), self.dbs[1].url()),
                ("us".into(), self.dbs[2].url()),
            ],
            setup: Some("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000;".into()),
        }
    }
}

#[cfg(feature = "postgres")]
struct PgSilos {
    schemas: Vec<diesel_outbox_tests::PgSchema>,
}

#[cfg(feature = "postgres")]
impl PgSilos {
    fn new() -> Option<Self> {
        let schemas = (0..3)
            .map(|_| diesel_outbox_tests::PgSchema::create())
            .collect::<Option<Vec<_>>>()?;
        Some(PgSilos { schemas })
    }
}

#[cfg(feature = "postgres")]
impl Silos for PgSilos {
    type Conn = diesel::PgConnection;
    fn urls(&self) -> SiloUrls {
        SiloUrls {
            control: self.schemas[0].url(),
            cells: vec![
                ("eu".into(), self.schemas[1].url()),
                ("us".into(), self.schemas[2].url()),
            ],
            setup: None,
        }
    }
}

#[cfg(feature = "mysql")]
struct MysqlSilos {
    databases: Vec<diesel_outbox_tests::MysqlDb>,
}

#[cfg(feature = "mysql")]
impl MysqlSilos {
    fn new() -> Option<Self> {
        let databases = (0..3)
            .map(|_| diesel_outbox_tests::MysqlDb::create())
            .collect::<Option<Vec<_>>>()?;
        Some(MysqlSilos { databases })
    }
}

#[cfg(feature = "mysql")]
impl Silos for MysqlSilos {
    type Conn = diesel::MysqlConnection;
    fn urls(&self) -> SiloUrls {
        SiloUrls {
            control: self.databases[0].url(),
            cells: vec![
                ("eu".into(), self.databases[1].url()),
                ("us".into(), self.databases[2].url()),
            ],
            setup: None,
        }
    }
}

/// Over signed HTTP (the demo) or through direct connections.
#[derive(Clone, Copy, Debug)]
enum Wiring {
    Http,
    Direct,
}

fn deploy<S: Silos>(silos: &S, wiring: Wiring) -> Deployment<S::Conn>
where
    User: ModelWrites<S::Conn>,
    Organization: ModelWrites<S::Conn>,
{
    let urls = silos.urls();
    let world = match wiring {
        Wiring::Http => Deployment::<S::Conn>::create(&urls).expect("deployment over HTTP"),
        Wiring::Direct => Deployment::<S::Conn>::create_direct(&urls).expect("direct deployment"),
    };
    assert_eq!(world.over_http(), matches!(wiring, Wiring::Http));
    world
}

fn the_story_converges<S: Silos>(silos: &S, wiring: Wiring)
where
    User: ModelWrites<S::Conn> + ControlReplicationHooks<S::Conn>,
    Organization: ModelWrites<S::Conn> + CellReplicationHooks<S::Conn>,
{
    let mut world = deploy(silos, wiring);
    let mut told = Vec::new();
    let check = run_story(&mut world, &mut |line| told.push(line.to_owned())).expect("story");
    assert!(
        check.converged(),
        "{:#?}\n{}",
        check.problems,
        told.join("\n")
    );
    assert_eq!(check.outbox_rows, 0);
    // Every deletion is mirrored, through a tombstone in the other silo.
    assert_eq!(
        check.control_tombstones,
        vec![("organizations".to_owned(), 10)]
    );
    assert_eq!(check.cell_tombstones["us"], vec![("users".to_owned(), 3)]);
    assert!(check.cell_tombstones["eu"].is_empty());

    let eu = &mut world.cell("eu").expect("eu").conn;
    let replicas = eu.user_replicas().expect("eu replicas");
    assert_eq!(
        replicas,
        vec![
            UserReplica {
                id: 1,
                name: "Ada".into()
            },
            UserReplica {
                id: 2,
                name: "Bobby".into()
            }
        ]
    );
    let us = &mut world.cell("us").expect("us").conn;
    assert_eq!(
        us.memberships().expect("us members"),
        vec![(20, 2)],
        "Carol's membership cascaded"
    );
    let mappings = world
        .control
        .conn
        .organization_mappings()
        .expect("mappings");
    assert_eq!(
        mappings,
        vec![OrganizationMapping {
            organization_id: 20,
            name: "Globex Corp".into(),
            cell_name: "us".into()
        }]
    );
}

/// Over HTTP: us's server is down while control saves users. eu gets them at once; the
/// rows for us stay and only us's shards back off; once us is back they are delivered.
fn a_cell_whose_server_is_down_backs_off_only_its_shards<S: Silos>(silos: &S)
where
    User: ModelWrites<S::Conn>,
    Organization: ModelWrites<S::Conn>,
{
    let mut world = deploy(silos, Wiring::Http);
    world.cut("us").expect("stop us");
    assert!(!world
        .service(&diesel_outbox::SiloId::cell("us"))
        .expect("us")
        .is_running());
    for user in [
        User::new(1, "Ada", &["eu"]),
        User::new(2, "Bob", &["eu", "us"]),
        User::new(3, "Carol", &["us"]),
    ] {
        world
            .save_user(&user)
            .expect("save: a flush failure never fails the writer");
    }
    let eu = world
        .cell("eu")
        .expect("eu")
        .conn
        .user_replicas()
        .expect("eu");
    assert_eq!(eu.iter().map(|u| u.id).collect::<Vec<_>>(), vec![1, 2]);
    assert!(world
        .cell("us")
        .expect("us")
        .conn
        .user_replicas()
        .expect("us")
        .is_empty());

    let control = &mut world.control;
    let states = control
        .outbox
        .shard_states(&mut control.conn, OutboxTable::Control)
        .expect("states");
    let mut failing: Vec<(String, i64)> = states
        .iter()
        .map(|state| {
            let cell = state.shard.cell_name().unwrap_or_default().to_owned();
            (cell, state.shard.shard().identifier)
        })
        .collect();
    failing.sort();
    assert_eq!(
        failing,
        vec![("us".to_owned(), 2), ("us".to_owned(), 3)],
        "only us's shards back off: {states:#?}"
    );
    assert!(states.iter().all(|state| state.attempts == 1));
    let waiting = diesel_outbox::testing::control_records(&mut control.conn).expect("rows");
    assert!(
        waiting.iter().all(|row| row.cell_name == "us"),
        "{waiting:#?}"
    );
    assert_eq!(waiting.len(), 2);

    world.restore("us").expect("start us again");
    world.advance(Duration::seconds(3));
    let report = world.drain().expect("drain");
    assert_eq!(report.delivered, 2, "{:#?}", report.failures);
    let check = world.check().expect("check");
    assert!(check.converged(), "{:#?}", check.problems);
    assert_eq!(check.user_replicas, 4);
}

fn a_cell_that_fails_its_first_connections_catches_up<S: Silos>(silos: &S)
where
    User: ModelWrites<S::Conn> + ControlReplicationHooks<S::Conn>,
    Organization: ModelWrites<S::Conn> + CellReplicationHooks<S::Conn>,
{
    let mut world = deploy(silos, Wiring::Direct);
    world.faults("us").expect("us").fail_next(3);
    let users = [
        User::new(1, "Ada", &["eu"]),
        User::new(2, "Bob", &["eu", "us"]),
        User::new(3, "Carol", &["us"]),
        User::new(4, "Dan", &["us"]),
    ];
    for user in &users {
        world.save_user(user).expect("save");
    }
    // eu converged at once; the first rows for us failed and back off.
    let eu_names: Vec<String> = world
        .cell("eu")
        .expect("eu")
        .conn
        .user_replicas()
        .expect("eu")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(eu_names, vec!["Ada", "Bob"]);
    let us_before = world
        .cell("us")
        .expect("us")
        .conn
        .user_replicas()
        .expect("us")
        .len();
    assert!(
        us_before < 3,
        "some rows for us failed: {us_before} delivered"
    );
    assert!(world.check().expect("check").outbox_rows > 0);

    // Nothing is due before the backoff passes.
    let early = world.drain().expect("drain");
    assert_eq!(early.delivered, 0);
    assert!(early.failures.is_empty());

    for _ in 0..6 {
        world.advance(Duration::seconds(70));
        world.drain().expect("drain");
    }
    assert_eq!(
        world.faults("us").expect("us").refused(),
        3,
        "exactly the injected failures"
    );
    let check = world.check().expect("check");
    // `check` also proves no row reached the wrong cell: a replica a user does not list
    // is reported.
    assert!(check.converged(), "{:#?}", check.problems);
    assert_eq!(check.user_replicas, 5);
}

/// Runs `hook` twice and returns the state of every database after each run.
fn twice<S: Silos>(
    world: &mut Deployment<S::Conn>,
    mut hook: impl FnMut(&mut Deployment<S::Conn>),
) -> (String, String)
where
    User: ModelWrites<S::Conn> + ControlReplicationHooks<S::Conn>,
    Organization: ModelWrites<S::Conn> + CellReplicationHooks<S::Conn>,
{
    hook(world);
    let first = snapshot(world);
    hook(world);
    (first, snapshot(world))
}

fn snapshot<C: DemoSql>(world: &mut Deployment<C>) -> String
where
    User: ModelWrites<C> + ControlReplicationHooks<C>,
    Organization: ModelWrites<C> + CellReplicationHooks<C>,
{
    let mut state = format!(
        "{:?}",
        world
            .control
            .conn
            .organization_mappings()
            .expect("mappings")
    );
    for (name, silo) in &mut world.cells {
        state += &format!(
            "\n{name}: {:?} {:?}",
            silo.conn.user_replicas().expect("replicas"),
            silo.conn.memberships().expect("members")
        );
    }
    state + &format!("\n{:?}", world.check().expect("check"))
}

fn every_hook_is_idempotent<S: Silos>(silos: &S)
where
    User: ModelWrites<S::Conn> + ControlReplicationHooks<S::Conn>,
    Organization: ModelWrites<S::Conn> + CellReplicationHooks<S::Conn>,
{
    let mut world = deploy(silos, Wiring::Direct);
    world
        .save_user(&User::new(2, "Bob", &["eu", "us"]))
        .expect("save");
    world
        .save_organization(
            "us",
            &Organization {
                id: 20,
                name: "Globex".into(),
            },
            &[2],
        )
        .expect("save");

    let bob = User::new(2, "Robert", &["eu", "us"]);
    let (first, second) = twice::<S>(&mut world, |world| {
        let control = &mut world.control;
        let mut ctx =
            ReplicationContext::new(&mut control.conn, 2, 2, Some("us"), control.silos.as_ref());
        bob.handle_async_replication(&mut ctx, "us", 2)
            .expect("replicate user");
    });
    assert_eq!(first, second, "user replication twice");

    let globex = Organization {
        id: 20,
        name: "Globex Corp".into(),
    };
    let (first, second) = twice::<S>(&mut world, |world| {
        let us = world.cell("us").expect("us");
        let mut ctx = ReplicationContext::new(&mut us.conn, 20, 20, None, us.silos.as_ref());
        globex
            .handle_async_replication(&mut ctx, 20)
            .expect("replicate organization");
    });
    assert_eq!(first, second, "organization replication twice");

    let (first, second) = twice::<S>(&mut world, |world| {
        let control = &mut world.control;
        let mut ctx =
            ReplicationContext::new(&mut control.conn, 2, 2, Some("us"), control.silos.as_ref());
        <User as ControlReplicationHooks<S::Conn>>::handle_async_deletion(
            &mut ctx,
            "us",
            2,
            2,
            None::<&JsonPayload>,
        )
        .expect("delete user");
    });
    assert_eq!(first, second, "user deletion twice");

    let (first, second) = twice::<S>(&mut world, |world| {
        let us = world.cell("us").expect("us");
        let mut ctx = ReplicationContext::new(&mut us.conn, 20, 20, None, us.silos.as_ref());
        <Organization as CellReplicationHooks<S::Conn>>::handle_async_deletion(
            &mut ctx, 20, 20, None,
        )
        .expect("delete organization");
    });
    assert_eq!(first, second, "organization deletion twice");
}

mod sqlite {
    use super::*;

    #[test]
    fn the_story_converges_over_http() {
        super::the_story_converges(&SqliteSilos::new(), Wiring::Http);
    }

    #[test]
    fn the_story_converges_through_direct_connections() {
        super::the_story_converges(&SqliteSilos::new(), Wiring::Direct);
    }

    #[test]
    fn a_cell_whose_server_is_down_backs_off_only_its_shards() {
        super::a_cell_whose_server_is_down_backs_off_only_its_shards(&SqliteSilos::new());
    }

    #[test]
    fn a_cell_that_fails_its_first_connections_catches_up() {
        super::a_cell_that_fails_its_first_connections_catches_up(&SqliteSilos::new());
    }

    #[test]
    fn every_hook_is_idempotent() {
        super::every_hook_is_idempotent(&SqliteSilos::new());
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    #[test]
    fn the_story_converges_over_http() {
        let Some(silos) = PgSilos::new() else { return };
        super::the_story_converges(&silos, Wiring::Http);
    }

    #[test]
    fn the_story_converges_through_direct_connections() {
        let Some(silos) = PgSilos::new() else { return };
        super::the_story_converges(&silos, Wiring::Direct);
    }

    #[test]
    fn a_cell_whose_server_is_down_backs_off_only_its_shards() {
        let Some(silos) = PgSilos::new() else { return };
        super::a_cell_whose_server_is_down_backs_off_only_its_shards(&silos);
    }

    #[test]
    fn a_cell_that_fails_its_first_connections_catches_up() {
        let Some(silos) = PgSilos::new() else { return };
        super::a_cell_that_fails_its_first_connections_catches_up(&silos);
    }

    #[test]
    fn every_hook_is_idempotent() {
        let Some(silos) = PgSilos::new() else { return };
        super::every_hook_is_idempotent(&silos);
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;

    #[test]
    fn the_story_converges_over_http() {
        let Some(silos) = MysqlSilos::new() else {
            return;
        };
        super::the_story_converges(&silos, Wiring::Http);
    }

    #[test]
    fn the_story_converges_through_direct_connections() {
        let Some(silos) = MysqlSilos::new() else {
            return;
        };
        super::the_story_converges(&silos, Wiring::Direct);
    }

    #[test]
    fn a_cell_whose_server_is_down_backs_off_only_its_shards() {
        let Some(silos) = MysqlSilos::new() else {
            return;
        };
        super::a_cell_whose_server_is_down_backs_off_only_its_shards(&silos);
    }

    #[test]
    fn a_cell_that_fails_its_first_connections_catches_up() {
        let Some(silos) = MysqlSilos::new() else {
            return;
        };
        super::a_cell_that_fails_its_first_connections_catches_up(&silos);
    }

    #[test]
    fn every_hook_is_idempotent() {
        let Some(silos) = MysqlSilos::new() else {
            return;
        };
        super::every_hook_is_idempotent(&silos);
    }
}
