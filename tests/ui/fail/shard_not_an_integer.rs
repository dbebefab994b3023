include!("../common/prelude.rs");

// (A float rather than a `String`: with the `mysql` feature, rustc prints `String` as
// `std::string::String`, since diesel's `MysqlType::String` shares its name, and one
// expectation must hold for every set of backends.)
diesel::table! {
    scores (id) {
        id -> BigInt,
        organization_id -> BigInt,
        weight -> Double,
    }
}

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = scores)]
#[outbox(category = Category::ProjectUpdate)]
struct Score {
    id: i64,
    organization_id: i64,
    #[outbox(shard)]
    weight: f64,
}

fn main() {}
