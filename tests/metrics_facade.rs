#[test]
fn show() {
    let metrics = tower_prometheus::Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .unwrap();
    metrics::with_local_recorder(&metrics.recorder(), || {
        metrics::describe_counter!("orders", "Orders taken");
        metrics::counter!("orders", "kind" => "new").increment(2);
        metrics::gauge!("queue.depth").set(7.0);
        metrics::histogram!("db.query.seconds", "table" => "invoices").record(0.012);
    });
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, metrics.registry()).unwrap();
    println!("{text}");
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, metrics.registry()).unwrap();
    println!("{text}");
}
