include!("../common/prelude.rs");

use diesel_outbox::ModelWrites;

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

/// A hand-written impl receives a token when the runtime calls it: one for `Evil` only.
struct Evil;

impl ModelWrites<SqliteConnection> for Evil {
    const COLUMNS: usize = 0;

    fn insert_rows(
        conn: &mut SqliteConnection,
        _models: &[Self],
        token: diesel_outbox::__private_0_1_0::Token<'_, Self>,
    ) -> diesel_outbox::Result<()> {
        let project = Project { id: 1, organization_id: 1, name: "p".into() };
        // Passing it on to another model's SQL would write that model without its row.
        <Project as ModelWrites<SqliteConnection>>::insert_rows(conn, &[project], token)
    }

    fn update_row(
        _: &mut SqliteConnection,
        _: &Self,
        _: diesel_outbox::__private_0_1_0::Token<'_, Self>,
    ) -> diesel_outbox::Result<usize> {
        Ok(0)
    }

    fn upsert_rows(
        _: &mut SqliteConnection,
        _: &[Self],
        _: diesel_outbox::__private_0_1_0::Token<'_, Self>,
    ) -> diesel_outbox::Result<()> {
        Ok(())
    }

    fn delete_rows(
        _: &mut SqliteConnection,
        _: &[i64],
        _: diesel_outbox::__private_0_1_0::Token<'_, Self>,
    ) -> diesel_outbox::Result<Vec<Self>> {
        Ok(Vec::new())
    }

    fn load_row(_: &mut SqliteConnection, _: i64) -> diesel_outbox::Result<Option<Self>> {
        Ok(None)
    }

    fn load_rows(_: &mut SqliteConnection, _: &[i64]) -> diesel_outbox::Result<Vec<Self>> {
        Ok(Vec::new())
    }
    fn load_page(_: &mut SqliteConnection, _: Option<i64>, _: i64) -> diesel_outbox::Result<Vec<Self>> {
        Ok(Vec::new())
    }

    fn count_rows(_: &mut SqliteConnection) -> diesel_outbox::Result<i64> {
        Ok(0)
    }
}

fn main() {}
