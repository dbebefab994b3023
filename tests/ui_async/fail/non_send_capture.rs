include!("../prelude.rs");

async fn handler() {
    let mut conn = connection();
    let project = Project { id: 1, organization_id: 1, name: "acme".into() };
    let audit = std::rc::Rc::new(std::cell::Cell::new(0));
    // The context's future must be `Send` (axum handlers, `tokio::spawn`): a closure
    // holding an `Rc` across an await is refused.
    outbox_context_async(&mut conn, async move |ctx| {
        let seen = audit.clone();
        project.save_async(ctx).await?;
        seen.set(1);
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

fn main() {
    let _ = handler();
}
