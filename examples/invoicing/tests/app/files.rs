//! Attachments (types, sizes, storage) and the static folders (no path escapes).

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;

use crate::common::{JPEG, PDF, PNG, TestApp, multipart};

async fn app_with_invoice(max_upload_bytes: u64) -> (TestApp, i64) {
    let app = TestApp::with(|config| config.max_upload_bytes = max_upload_bytes).await;
    let (s, c) = (app.seller("S").await, app.client("C").await);
    let id = app.invoice(s, c, "F-1").await["id"].as_i64().unwrap();
    (app, id)
}

/// The names in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn pdf_png_and_jpeg_are_stored_under_server_names_and_served() {
    let (app, id) = app_with_invoice(1024 * 1024).await;
    let uploads = app.state.config.uploads_dir.clone();
    let mut urls = Vec::new();
    for (name, content, content_type, extension) in [
        ("../../invoice.pdf", PDF, "application/pdf", "pdf"),
        ("scan.png", PNG, "image/png", "png"),
        // Named and declared as something else: the content decides.
        ("photo.gif", JPEG, "image/jpeg", "jpg"),
    ] {
        let reply = app.upload(id, name, content).await;
        let body = reply.expect(StatusCode::CREATED);
        let url = body["url"].as_str().unwrap().to_owned();
        assert_eq!(reply.header(header::LOCATION), Some(url.as_str()));
        assert_eq!(body["content_type"], content_type);
        assert_eq!(body["size"], content.len());
        assert_eq!(
            body["filename"],
            Path::new(name).file_name().unwrap().to_str().unwrap()
        );
        let stored = url.strip_prefix("/uploads/").unwrap();
        let (stem, ext) = stored.rsplit_once('.').unwrap();
        assert_eq!(ext, extension);
        assert_eq!(stem.len(), 36, "a UUID: {stored}");
        assert_eq!(std::fs::read(uploads.join(stored)).unwrap(), content);

        let served = app.get(&url).await;
        assert_eq!(served.status, StatusCode::OK);
        assert_eq!(served.body, content);
        assert_eq!(served.header(header::CONTENT_TYPE), Some(content_type));
        assert_eq!(
            served.header(header::X_CONTENT_TYPE_OPTIONS),
            Some("nosniff")
        );
        urls.push(url);
    }
    let list = app
        .get(&format!("/api/invoices/{id}/attachments"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(list["total"], 3);
    let listed: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["url"].as_str().unwrap())
        .collect();
    assert_eq!(listed, urls);
    let page = app
        .get(&format!("/api/invoices/{id}/attachments?limit=1&offset=2"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(page["items"][0]["url"], urls[2].as_str());

    // Deleting the invoice deletes its files.
    assert_eq!(files_in(&uploads).len(), 3);
    assert_eq!(
        app.delete(&format!("/api/invoices/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(files_in(&uploads), Vec::<String>::new());
    app.get(&urls[0])
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn refused_uploads_leave_no_file() {
    let (app, id) = app_with_invoice(1024).await;
    let uploads = app.state.config.uploads_dir.clone();
    app.upload(id, "page.html", b"<html><script>alert(1)</script></html>")
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    app.upload(id, "short", b"%P")
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let fields = app
        .upload(id, "empty.pdf", b"")
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(fields, json!({"file": "the file is empty"}));
    let (content_type, body) = multipart("document", "a.pdf", "application/pdf", PDF);
    let fields = app
        .send(
            Request::post(format!("/api/invoices/{id}/attachments"))
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(fields.get("file").is_some());
    assert_eq!(files_in(&uploads), Vec::<String>::new());
    assert_eq!(
        app.get(&format!("/api/invoices/{id}/attachments"))
            .await
            .json()["total"],
        0
    );
}

#[tokio::test]
async fn uploads_are_limited_to_max_upload_bytes() {
    let (app, id) = app_with_invoice(1024).await;
    let uploads = app.state.config.uploads_dir.clone();
    let sized = |size: usize| {
        let mut file = PDF.to_vec();
        file.resize(size, b' ');
        file
    };
    let at_limit = app.upload(id, "a.pdf", &sized(1024)).await;
    assert_eq!(at_limit.expect(StatusCode::CREATED)["size"], 1024);
    app.upload(id, "b.pdf", &sized(1025))
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Far beyond: the body limit stops reading before the handler's own count does.
    app.upload(id, "c.pdf", &sized(1024 * 1024))
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(
        files_in(&uploads).len(),
        1,
        "only the accepted file is left"
    );
    let total: u64 = 1024;
    let metrics = app.state.telemetry.http.as_ref().unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, metrics.registry()).unwrap();
    assert!(
        text.contains(&format!(
            "invoicing_attachments_stored_bytes_total {total}\n"
        )),
        "{text}"
    );
}

/// `..`, encoded `..`, encoded slashes and backslashes, absolute paths: nothing outside
/// `UPLOADS_DIR` and `PDF_DIR` is ever served.
#[tokio::test]
async fn static_paths_never_escape_their_folders() {
    let app = TestApp::new().await;
    let root = app.dir.path().to_owned();
    let secret = "TOP-SECRET-MARKER";
    std::fs::write(root.join("secret.txt"), secret).unwrap();
    std::fs::write(app.state.config.pdf_dir.join("invoice.pdf"), PDF).unwrap();
    std::fs::create_dir(app.state.config.uploads_dir.join("sub")).unwrap();
    std::fs::write(
        app.state.config.uploads_dir.join("sub").join("inner.pdf"),
        PDF,
    )
    .unwrap();

    // What is inside is served.
    let inside = app.get("/pdf-a3/invoice.pdf").await;
    assert_eq!(inside.status, StatusCode::OK);
    assert_eq!(inside.body, PDF);
    assert_eq!(
        app.get("/uploads/sub/inner.pdf").await.status,
        StatusCode::OK
    );

    let absolute = root.join("secret.txt");
    let absolute = absolute.to_str().unwrap();
    let encoded_absolute = absolute.replace('/', "%2F");
    let mut attempts = Vec::new();
    for prefix in ["/uploads", "/pdf-a3"] {
        for path in [
            "/../secret.txt".to_owned(),
            "/../../secret.txt".to_owned(),
            "/sub/../../secret.txt".to_owned(),
            "/%2e%2e/secret.txt".to_owned(),
            "/%2E%2E/secret.txt".to_owned(),
            "/.%2e/secret.txt".to_owned(),
            "/%2e%2e%2fsecret.txt".to_owned(),
            "/%2e%2e%2f%2e%2e%2fsecret.txt".to_owned(),
            "/..%2fsecret.txt".to_owned(),
            "/..%5csecret.txt".to_owned(),
            "/%2e%2e%5csecret.txt".to_owned(),
            "/%252e%252e/secret.txt".to_owned(),
            "/..;/secret.txt".to_owned(),
            "/sub/%2e%2e/%2e%2e/secret.txt".to_owned(),
            format!("/{absolute}"),
            format!("/{encoded_absolute}"),
            format!("//{encoded_absolute}"),
            "/%2Fetc%2Fpasswd".to_owned(),
            "//etc/passwd".to_owned(),
            "/../../../../../../etc/passwd".to_owned(),
            "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd".to_owned(),
            "/%2e%2e/test.db".to_owned(),
            "/..%2ftest.db".to_owned(),
        ] {
            attempts.push(format!("{prefix}{path}"));
        }
    }
    for uri in attempts {
        let reply = app
            .send(Request::get(&uri).body(Body::empty()).unwrap())
            .await;
        let text = reply.text();
        assert!(
            !reply.status.is_success() && !reply.status.is_redirection(),
            "{uri} answered {}: {text}",
            reply.status
        );
        assert!(!text.contains(secret), "{uri} leaked the secret");
        assert!(!text.contains("root:"), "{uri} leaked /etc/passwd");
        assert!(!text.contains("SQLite format"), "{uri} leaked the database");
        let code = reply.json()["error"]["code"].as_str().unwrap().to_owned();
        reply.expect_error(reply.status, &code);
    }
}

/// A name longer than the file system allows (255 bytes a component, 4 KiB a path) names
/// nothing: 404, never a 500 that would count as a server error.
#[tokio::test]
async fn names_too_long_for_the_file_system_are_404() {
    let app = TestApp::new().await;
    let long = "a".repeat(256);
    let deep = "b/".repeat(2100);
    for uri in [
        format!("/uploads/{long}"),
        format!("/pdf-a3/{long}"),
        format!("/uploads/{long}/x.pdf"),
        format!("/uploads/{deep}x.pdf"),
        format!("/pdf-a3/{deep}x.pdf"),
    ] {
        let reply = app.get(&uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}…", &uri[..40]);
        reply.expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    let metrics = app.scrape().await.text();
    assert!(
        !metrics.contains("http_response_status_code=\"500\""),
        "a 5xx was counted: {metrics}"
    );
}

/// A symbolic link inside a served folder that points out of it is not followed: neither
/// to a file (`/etc/passwd`, a secret beside the database) nor to a folder (the data
/// folder with the SQLite file). A link that stays inside is served.
#[tokio::test]
async fn symlinks_never_lead_out_of_the_served_folders() {
    use std::os::unix::fs::symlink;

    let app = TestApp::new().await;
    let root = app.dir.path().to_owned();
    let pdf_dir = app.state.config.pdf_dir.clone();
    let uploads = app.state.config.uploads_dir.clone();
    std::fs::write(root.join("secret.txt"), "TOP-SECRET-MARKER").unwrap();
    std::fs::write(pdf_dir.join("invoice.pdf"), PDF).unwrap();
    symlink("/etc/passwd", pdf_dir.join("x")).unwrap();
    symlink(root.join("secret.txt"), uploads.join("secret.pdf")).unwrap();
    symlink(&root, pdf_dir.join("data")).unwrap();
    symlink("..", uploads.join("up")).unwrap();
    symlink(pdf_dir.join("invoice.pdf"), pdf_dir.join("alias.pdf")).unwrap();

    for uri in [
        "/pdf-a3/x",
        "/uploads/secret.pdf",
        "/pdf-a3/data/test.db",
        "/pdf-a3/data/secret.txt",
        "/uploads/up/test.db",
        "/uploads/up/pdf-a3/invoice.pdf",
    ] {
        let reply = app.get(uri).await;
        let text = reply.text();
        assert!(!text.contains("root:"), "{uri} served /etc/passwd");
        assert!(!text.contains("TOP-SECRET"), "{uri} served the secret");
        assert!(!text.contains("SQLite format"), "{uri} served the database");
        reply.expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    let inside = app.get("/pdf-a3/alias.pdf").await;
    assert_eq!(inside.status, StatusCode::OK);
    assert_eq!(inside.body, PDF);
}

/// Files whose name starts with a dot (the `.{uuid}.part` of an upload in progress, or
/// anything hidden) are never served; `.part` files left by a crash are removed when the
/// service starts.
#[tokio::test]
async fn hidden_and_partial_files_are_never_served_and_cleaned_at_start() {
    let app = TestApp::new().await;
    let uploads = app.state.config.uploads_dir.clone();
    let part = ".0b5a4e36-1d7c-4b8e-9d3e-2f8a6c1e4b7d.part";
    std::fs::write(uploads.join(part), PDF).unwrap();
    std::fs::write(app.state.config.pdf_dir.join(".hidden.pdf"), PDF).unwrap();
    std::fs::create_dir(uploads.join(".git")).unwrap();
    std::fs::write(uploads.join(".git").join("config"), "x").unwrap();
    std::fs::write(uploads.join("kept.pdf"), PDF).unwrap();
    for uri in [
        format!("/uploads/{part}"),
        "/pdf-a3/.hidden.pdf".to_owned(),
        "/uploads/.git/config".to_owned(),
    ] {
        app.get(&uri)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }

    // A restart on the same folders removes what a crash left behind, and only that.
    let config = (*app.state.config).clone();
    let restarted = invoicing::AppState::open(config).await.expect("reopens");
    assert_eq!(
        files_in(&restarted.config.uploads_dir),
        [".git", "kept.pdf"],
        "the .part file is gone, the rest is kept"
    );
}

/// A range that the file cannot satisfy is a 416 whose `Content-Range: bytes */N` tells
/// the client the size (RFC 9110 §15.5.17), in the JSON error shape.
#[tokio::test]
async fn unsatisfiable_ranges_keep_their_content_range() {
    let app = TestApp::new().await;
    std::fs::write(app.state.config.pdf_dir.join("invoice.pdf"), PDF).unwrap();
    let reply = app
        .send(
            Request::get("/pdf-a3/invoice.pdf")
                .header(header::RANGE, "bytes=5000-6000")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    reply.expect_error(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable");
    let expected = format!("bytes */{}", PDF.len());
    assert_eq!(reply.header(header::CONTENT_RANGE), Some(expected.as_str()));
}
