include!("../prelude.rs");

async fn handler() {
    let mut conn = connection();
    let project = Project { id: 1, organization_id: 1, name: "acme".into() };
    // An async write takes the outbox context, never a bare connection.
    project.save_async(&mut conn).await.unwrap();
}

fn main() {
    let _ = handler();
}
