include!("../prelude.rs");

async fn handler() {
    let mut conn = connection();
    // Nor can the closure hand it back.
    let _ctx = outbox_context_async(&mut conn, async |ctx| Ok::<_, Error>(ctx))
        .await
        .unwrap();
}

fn main() {
    let _ = handler();
}
