//! What the backfill writes: the models it walks, and one page of one model written
//! through an outbox context, exactly as the model's own writes record their rows (one
//! cell row per object; one control row per target cell), so that a concurrent write of
//! the same object coalesces with it in the drain. When and which model a batch runs,
//! its throttle and its stored position are the [`Outbox`](crate::Outbox)'s.

use std::fmt;

use super::context::OutboxContext;
use super::model::{ModelWrites, ReplicatedCell, ReplicatedControl};
use crate::backend::OutboxConnection;
use crate::key::error::Result;
use crate::key::shard::OutboxTable;
use crate::row::write::OutboxWrite;

/// What one page wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Page {
    /// Objects read from the model's table.
    pub(crate) objects: usize,
    /// Outbox rows written for them.
    pub(crate) rows: usize,
    /// The highest key read (the page's last object).
    pub(crate) last_id: Option<i64>,
}

/// Reads up to `limit` objects after a key, and the outbox rows their writes record.
type ReadPage<C> = fn(&mut C, Option<i64>, i64) -> Result<(Page, Vec<OutboxWrite>)>;

/// One model the backfill walks.
pub(crate) struct BackfillModel<C> {
    /// The outbox its rows go to.
    pub(crate) table: OutboxTable,
    /// Its table's name, which names it in `outbox_backfills`.
    pub(crate) name: &'static str,
    /// Its declared replication version.
    pub(crate) version: i32,
    read_page: ReadPage<C>,
    /// Counts its table's rows.
    pub(crate) count: fn(&mut C) -> Result<i64>,
}

/// The replicated models an [`Outbox`](crate::Outbox) backfills, each with the
/// replication version it declares (`#[outbox(replication_version = N)]`): register every
/// replicated model whose rows this database's outbox carries, and give the list to
/// [`OutboxBuilder::backfill`](crate::OutboxBuilder::backfill). The list is taken as the
/// whole of the application's models for each outbox table it names: a model stored in
/// `outbox_backfills` for that table but missing from it is reported as no longer declared.
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { ProjectUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # diesel::table! { projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text } }
/// use diesel::prelude::*;
/// use diesel_outbox::backfill::Backfills;
/// use diesel_outbox::ReplicatedCell;
///
/// #[derive(Queryable, Selectable, ReplicatedCell)]
/// #[diesel(table_name = projects)]
/// #[outbox(category = Category::ProjectUpdate, replication_version = 2)]
/// struct Project { id: i64, organization_id: i64, name: String }
///
/// # fn main() {
/// let backfills = Backfills::<SqliteConnection>::new().cell::<Project>();
/// assert_eq!(backfills.declared(), vec![("cell_outboxes", "projects", 2)]);
/// # }
/// ```
pub struct Backfills<C> {
    models: Vec<BackfillModel<C>>,
}

impl<C> Default for Backfills<C> {
    fn default() -> Self {
        Backfills { models: Vec::new() }
    }
}

impl<C> fmt::Debug for Backfills<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.models
                    .iter()
                    .map(|model| (model.table.name(), model.name, model.version)),
            )
            .finish()
    }
}

impl<C: OutboxConnection> Backfills<C> {
    /// No models yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Backfills the cell model `M` (one cell outbox row per object).
    pub fn cell<M>(self) -> Self
    where
        M: ReplicatedCell + ModelWrites<C>,
    {
        self.with(BackfillModel {
            table: OutboxTable::Cell,
            name: M::TABLE_NAME,
            version: M::REPLICATION_VERSION,
            read_page: read_cell_page::<C, M>,
            count: M::count_rows,
        })
    }

    /// Backfills the control model `M` (one control outbox row per object and target
    /// cell).
    pub fn control<M>(self) -> Self
    where
        M: ReplicatedControl + ModelWrites<C>,
    {
        self.with(BackfillModel {
            table: OutboxTable::Control,
            name: M::TABLE_NAME,
            version: M::REPLICATION_VERSION,
            read_page: read_control_page::<C, M>,
            count: M::count_rows,
        })
    }

    /// The models, as `(outbox table, model, declared version)`, in the order they are
    /// backfilled.
    pub fn declared(&self) -> Vec<(&'static str, &'static str, i32)> {
        self.models
            .iter()
            .map(|model| (model.table.name(), model.name, model.version))
            .collect()
    }

    /// A model registered twice is registered once, at its first place.
    fn with(mut self, model: BackfillModel<C>) -> Self {
        match self
            .models
            .iter_mut()
            .find(|known| known.table == model.table && known.name == model.name)
        {
            Some(known) => *known = model,
            None => self.models.push(model),
        }
        self
    }
}

impl<C> Backfills<C> {
    pub(crate) fn models(&self) -> &[BackfillModel<C>] {
        &self.models
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

impl<C: OutboxConnection> BackfillModel<C> {
    /// Reads up to `limit` objects after the key `after` and writes their outbox rows into
    /// `ctx`, as the model's own writes record them.
    pub(crate) fn write_page(
        &self,
        ctx: &mut OutboxContext<'_, C>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Page> {
        let (page, rows) = (self.read_page)(ctx.connection(), after, limit)?;
        for row in rows {
            ctx.write(row)?;
        }
        Ok(page)
    }
}

fn read_cell_page<C, M>(
    conn: &mut C,
    after: Option<i64>,
    limit: i64,
) -> Result<(Page, Vec<OutboxWrite>)>
where
    M: ReplicatedCell + ModelWrites<C>,
{
    let models = M::load_page(conn, after, limit)?;
    let rows = models
        .iter()
        .map(|model| model.outbox_row().map(OutboxWrite::from))
        .collect::<Result<Vec<_>>>()?;
    let page = Page {
        objects: models.len(),
        rows: rows.len(),
        last_id: models.last().map(ReplicatedCell::object_identifier),
    };
    Ok((page, rows))
}

fn read_control_page<C, M>(
    conn: &mut C,
    after: Option<i64>,
    limit: i64,
) -> Result<(Page, Vec<OutboxWrite>)>
where
    M: ReplicatedControl + ModelWrites<C>,
{
    let models = M::load_page(conn, after, limit)?;
    let mut rows = Vec::new();
    for model in &models {
        rows.extend(model.outbox_rows()?.into_iter().map(OutboxWrite::from));
    }
    let page = Page {
        objects: models.len(),
        rows: rows.len(),
        last_id: models.last().map(ReplicatedControl::object_identifier),
    };
    Ok((page, rows))
}
