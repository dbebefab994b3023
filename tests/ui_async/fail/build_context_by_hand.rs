include!("../prelude.rs");

fn main() {
    let mut conn = connection();
    // The async context is the same type as the sync one: only the runtime builds it.
    let _ctx: OutboxContext<'_, SyncConnectionWrapper<SqliteConnection>> =
        OutboxContext { conn: &mut conn };
}
