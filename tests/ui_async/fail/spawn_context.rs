include!("../prelude.rs");

async fn handler() {
    let mut conn = connection();
    // Nor move it into a task that may outlive the transaction.
    outbox_context_async(&mut conn, async |ctx| {
        tokio::spawn(async move { ctx.pending_rows() });
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

fn main() {
    let _ = handler();
}
