//! Issue 26, point 1 asked of every label a client chooses: can a client make a label
//! value up? The gRPC method could (`tests/grpc.rs`,
//! `made_up_methods_do_not_take_the_real_methods_places`); this checks the HTTP route:
//! the layer's route label is axum's `MatchedPath`, a template of the router, whatever
//! path the client sends, through nested routers, their fallbacks, nested services and
//! the root fallback.

mod common;

use std::collections::BTreeSet;
use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_prometheus::Metrics;

#[tokio::test]
async fn made_up_paths_never_become_route_labels() {
    let metrics = Metrics::new();
    let files = tower::service_fn(|request: Request<Body>| async move {
        Ok::<_, Infallible>(axum::response::Response::new(Body::from(
            request.uri().path().to_owned(),
        )))
    });
    let api = Router::new()
        .route("/items/{id}", get(|| async { "an item" }))
        .fallback(|| async { (http::StatusCode::NOT_FOUND, "no such API") });
    let app = Router::new()
        .route("/users/{id}", get(|| async { "a user" }))
        .nest("/api", api)
        .nest_service("/static", files)
        .fallback(|| async { (http::StatusCode::NOT_FOUND, "nothing here") })
        .layer(metrics.http_layer());
    let mut sent = 0;
    for n in 0..50 {
        for path in [
            format!("/users/{n}x"),
            format!("/api/items/{n}"),
            format!("/api/made-up-{n}/deeper"),
            format!("/static/made-up-{n}.css"),
            format!("/made-up-{n}"),
            format!("/users/{n}/made-up"),
        ] {
            let request = Request::get(path.as_str())
                .body(Body::empty())
                .expect("a valid request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            response.into_body().collect().await.expect("the body");
            sent += 1;
        }
    }
    let samples = common::parse(&common::prometheus_text(metrics.registry()));
    const COUNT: &str = "http_server_request_duration_seconds_count";
    assert_eq!(common::total(&samples, COUNT, &[]), f64::from(sent));
    let routes: BTreeSet<&str> = common::find(&samples, COUNT, &[])
        .iter()
        .filter_map(|sample| sample.labels.get("http_route").map(String::as_str))
        .collect();
    // Templates of the router only: the fallbacks (the nested router's too) and the
    // nested service, undeclared, give none.
    assert_eq!(
        routes.into_iter().collect::<Vec<_>>(),
        ["/api/items/{id}", "/users/{id}"]
    );
    assert_eq!(
        common::total(&samples, COUNT, &[("http_response_status_code", "404")]),
        150.0,
        "the fallbacks answered"
    );
}
