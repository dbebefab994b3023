//! The tables a guard protects: the library's own, and the replicated models' tables it
//! is told about.

use std::sync::Arc;

/// The library's tables: written only by its own statements. Every table its migrations
/// create is here (a test reads the migrations to check it).
pub(crate) const LIBRARY_TABLES: &[&str] = &[
    "cell_outboxes",
    "control_outboxes",
    "cell_tombstones",
    "control_tombstones",
    "cell_outbox_shards",
    "control_outbox_shards",
    "cell_outbox_parked",
    "control_outbox_parked",
    "outbox_drain_leases",
    "diesel_outbox_object_ids",
    "outbox_applied_changes",
    "outbox_backfills",
];

/// What a protected table is, and so the rule that a write of it breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protection {
    /// A replicated model's table: written only inside an outbox context.
    Model,
    /// One of the outbox's own tables (outbox, tombstone, shard state, parked, lease):
    /// written only by the library's own statements.
    Library,
}

/// Replicated models whose tables a [`Guard`](super::Guard) protects: one model, or a
/// tuple of up to 16 (nest tuples for more). Implemented for every model that derives
/// `ReplicatedCell` or `ReplicatedControl`.
pub trait ProtectedModels {
    /// Appends the models' table names to `out`.
    fn table_names(out: &mut Vec<&'static str>);
}

macro_rules! protected_tuples {
    ($($name:ident)+) => {
        impl<$($name: ProtectedModels),+> ProtectedModels for ($($name,)+) {
            fn table_names(out: &mut Vec<&'static str>) {
                $($name::table_names(out);)+
            }
        }
    };
}

protected_tuples!(A);
protected_tuples!(A B);
protected_tuples!(A B C);
protected_tuples!(A B C D);
protected_tuples!(A B C D E);
protected_tuples!(A B C D E F);
protected_tuples!(A B C D E F G);
protected_tuples!(A B C D E F G H);
protected_tuples!(A B C D E F G H I);
protected_tuples!(A B C D E F G H I J);
protected_tuples!(A B C D E F G H I J K);
protected_tuples!(A B C D E F G H I J K L);
protected_tuples!(A B C D E F G H I J K L M);
protected_tuples!(A B C D E F G H I J K L M N);
protected_tuples!(A B C D E F G H I J K L M N O);
protected_tuples!(A B C D E F G H I J K L M N O P);

/// The set of tables a [`Guard`](super::Guard) protects: always the library's own tables,
/// plus the replicated models' tables it is given.
///
/// A table is known by its name (compared without regard to ASCII case), in any schema or
/// database: `"tenant_1"."users"` is `users`. A model is registered by its diesel
/// `table!` name; a table whose `table!` carries `#[sql_name = ".."]` is registered by that
/// name with [`table`](Self::table).
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { ProjectUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # diesel::table! { projects (id) { id -> BigInt, organization_id -> BigInt } }
/// # #[derive(diesel::Queryable, diesel::Selectable, diesel_outbox::ReplicatedCell)]
/// # #[diesel(table_name = projects)]
/// # #[outbox(category = Category::ProjectUpdate)]
/// # struct Project { id: i64, organization_id: i64 }
/// # fn main() {
/// use diesel_outbox::guard::{Protected, Protection};
///
/// let protected = Protected::models::<(Project,)>().table("legacy_projects");
/// assert_eq!(protected.protection("projects"), Some(Protection::Model));
/// assert_eq!(protected.protection("LEGACY_PROJECTS"), Some(Protection::Model));
/// assert_eq!(protected.protection("cell_outboxes"), Some(Protection::Library));
/// assert_eq!(protected.protection("invoices"), None);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Protected {
    models: Arc<Vec<String>>,
}

impl Protected {
    /// The library's tables alone.
    pub fn library() -> Self {
        Protected::default()
    }

    /// The library's tables and those of `M` (a model or a tuple of models).
    pub fn models<M: ProtectedModels>() -> Self {
        Protected::library().model::<M>()
    }

    /// These tables, and those of `M` (a model or a tuple of models).
    pub fn model<M: ProtectedModels>(self) -> Self {
        let mut names = Vec::new();
        M::table_names(&mut names);
        names.into_iter().fold(self, Protected::table)
    }

    /// These tables, and the replicated model table `name`.
    pub fn table(mut self, name: &str) -> Self {
        if self.protection(name).is_none() {
            Arc::make_mut(&mut self.models).push(name.to_owned());
        }
        self
    }

    /// Whether the table `name` is protected, and how.
    pub fn protection(&self, name: &str) -> Option<Protection> {
        let is = |table: &str| table.eq_ignore_ascii_case(name);
        if LIBRARY_TABLES.iter().any(|table| is(table)) {
            return Some(Protection::Library);
        }
        self.models
            .iter()
            .any(|table| is(table))
            .then_some(Protection::Model)
    }

    /// The replicated models' tables (the library's are always protected too).
    pub fn model_tables(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table the migrations create is one the guard protects: a table added by a
    /// migration and left out here would be writable without the library's rules.
    #[test]
    fn every_table_the_migrations_create_is_protected() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut created = Vec::new();
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.file_name().is_some_and(|name| name == "up.sql") {
                    files.push(path);
                }
            }
        }
        for file in &files {
            let sql = std::fs::read_to_string(file).unwrap_or_default();
            let words: Vec<&str> = sql.split_whitespace().collect();
            for (at, pair) in words.windows(2).enumerate() {
                if !(pair[0].eq_ignore_ascii_case("CREATE")
                    && pair[1].eq_ignore_ascii_case("TABLE"))
                {
                    continue;
                }
                let mut name = at + 2;
                if words
                    .get(name)
                    .is_some_and(|word| word.eq_ignore_ascii_case("IF"))
                {
                    name += 3; // IF NOT EXISTS
                }
                if let Some(word) = words.get(name) {
                    let trimmed = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
                    let table = trimmed.split('(').next().unwrap_or(trimmed);
                    created.push(table.to_owned());
                }
            }
        }
        assert!(files.len() >= 10, "found {} migrations", files.len());
        assert!(created.len() >= 10, "found {created:?}");
        for table in &created {
            assert_eq!(
                Protected::library().protection(table),
                Some(Protection::Library),
                "the migrations create `{table}`, which the guard does not protect"
            );
        }
    }
}
