//! Does every replica equal its source?

use std::collections::{BTreeMap, BTreeSet};

use diesel_outbox::silo::{tombstones, TombstoneTable};
use diesel_outbox::{Error, ModelWrites};

use super::models::{DemoSql, Organization, User, UserReplica};
use super::Deployment;

/// The outcome of [`Deployment::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Convergence {
    /// Every difference found between a source and its replicas; empty when converged.
    pub problems: Vec<String>,
    /// User replicas compared with control's users.
    pub user_replicas: usize,
    /// Organizations compared with control's mappings.
    pub organizations: usize,
    /// Outbox rows left in all databases.
    pub outbox_rows: i64,
    /// Tombstones of cell objects recorded in control: `(table, id)`.
    pub control_tombstones: Vec<(String, i64)>,
    /// Tombstones of control objects recorded in each cell: `cell -> (table, id)`.
    pub cell_tombstones: BTreeMap<String, Vec<(String, i64)>>,
}

impl Convergence {
    /// No difference and no outbox row left.
    pub fn converged(&self) -> bool {
        self.problems.is_empty() && self.outbox_rows == 0
    }
}

impl<C> Deployment<C>
where
    C: DemoSql,
    User: ModelWrites<C>,
    Organization: ModelWrites<C>,
{
    /// Compares every replica with its source, in both directions, and counts the outbox
    /// rows left.
    pub fn check(&mut self) -> Result<Convergence, Error> {
        let mut report = Convergence::default();
        let users = self.control.conn.users()?;
        let mappings = self.control.conn.organization_mappings()?;
        report.outbox_rows += self.control.conn.outbox_rows()?;
        report.control_tombstones =
            tombstones(&mut self.control.conn, TombstoneTable::Control, None)?
                .into_iter()
                .map(|t| (t.table_name, t.object_identifier))
                .collect();

        let mut mapped: BTreeSet<i64> = BTreeSet::new();
        for (cell, silo) in &mut self.cells {
            let replicas: BTreeMap<i64, UserReplica> = silo
                .conn
                .user_replicas()?
                .into_iter()
                .map(|replica| (replica.id, replica))
                .collect();
            let organizations = silo.conn.organizations()?;
            report.outbox_rows += silo.conn.outbox_rows()?;
            report.user_replicas += replicas.len();
            report.organizations += organizations.len();
            report.cell_tombstones.insert(
                cell.clone(),
                tombstones(&mut silo.conn, TombstoneTable::Cell, None)?
                    .into_iter()
                    .map(|t| (t.table_name, t.object_identifier))
                    .collect(),
            );

            for user in users
                .iter()
                .filter(|user| user.cell_names().contains(&cell.as_str()))
            {
                match replicas.get(&user.id) {
                    Some(replica) if replica.name == user.name => {}
                    Some(replica) => report.problems.push(format!(
                        "{cell}: user {} is {:?}, control says {:?}",
                        user.id, replica.name, user.name
                    )),
                    None => report.problems.push(format!(
                        "{cell}: user {} ({}) is missing",
                        user.id, user.name
                    )),
                }
            }
            for replica in replicas.values() {
                let wanted = users.iter().any(|user| {
                    user.id == replica.id && user.cell_names().contains(&cell.as_str())
                });
                if !wanted {
                    report.problems.push(format!(
                        "{cell}: user {} ({}) should not be here",
                        replica.id, replica.name
                    ));
                }
            }
            let organization_ids: BTreeSet<i64> = organizations.iter().map(|o| o.id).collect();
            for (organization, user) in silo.conn.memberships()? {
                if !organization_ids.contains(&organization) || !replicas.contains_key(&user) {
                    report.problems.push(format!(
                        "{cell}: membership ({organization}, {user}) points at a missing row"
                    ));
                }
            }
            for organization in &organizations {
                mapped.insert(organization.id);
                let mapping = mappings
                    .iter()
                    .find(|m| m.organization_id == organization.id);
                match mapping {
                    Some(m) if m.name == organization.name && &m.cell_name == cell => {}
                    Some(m) => report.problems.push(format!(
                        "control: organization {} is {:?} in {}, {cell} says {:?}",
                        organization.id, m.name, m.cell_name, organization.name
                    )),
                    None => report.problems.push(format!(
                        "control: organization {} ({}) of {cell} has no mapping",
                        organization.id, organization.name
                    )),
                }
            }
        }
        for mapping in mappings
            .iter()
            .filter(|m| !mapped.contains(&m.organization_id))
        {
            report.problems.push(format!(
                "control: mapping of organization {} ({}) outlived it",
                mapping.organization_id, mapping.name
            ));
        }
        Ok(report)
    }
}
