include!("../prelude.rs");

async fn handler() {
    let mut conn = connection();
    let mut stash = None;
    // The context cannot outlive its closure: storing it outside fails.
    outbox_context_async(&mut conn, async |ctx| {
        stash = Some(ctx);
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

fn main() {
    let _ = handler();
}
