//! Static files: `/uploads/*` from `UPLOADS_DIR`, `/pdf-a3/*` from `PDF_DIR`.
//!
//! `ServeDir` decodes the path and refuses any component that is not a plain name
//! (`..`, a root, a drive prefix). Its file system goes through [`Confined`], which adds
//! what `ServeDir` leaves to the caller:
//!
//! - a name that starts with a dot is never served (the `.{uuid}.part` of an upload in
//!   progress, `.git`, anything hidden);
//! - symbolic links are resolved, and a file whose real path is outside the folder is not
//!   served (`ln -s /etc/passwd`, a link to the data folder and its SQLite file);
//! - a name the file system cannot resolve (too long, a file used as a folder, a loop of
//!   links) is a 404 like a missing one, not a 500.
//!
//! Folders are not listed, and files are sent with `X-Content-Type-Options: nosniff` so
//! that a browser never runs an upload as something else than its type.
//! `tests/app/files.rs` tries the usual escapes.

use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::services::ServeDir;
use tower_http::services::fs::{Backend, TokioBackend, TokioFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;
use crate::config::Config;

/// The two static folders.
pub fn router(config: &Config) -> Router<AppState> {
    let serve = |dir: &Path| {
        ServeDir::with_backend(dir, Confined::new(dir)).append_index_html_on_directories(false)
    };
    Router::new()
        .nest_service("/uploads", serve(&config.uploads_dir))
        .nest_service("/pdf-a3", serve(&config.pdf_dir))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// The file system of one served folder, as [`ServeDir`] sees it: only the plain files
/// whose real path is inside the folder.
#[derive(Clone, Debug)]
pub struct Confined {
    /// The folder as configured: `ServeDir` joins request paths to it.
    base: Arc<Path>,
}

impl Confined {
    /// The folder `base`.
    pub fn new(base: &Path) -> Self {
        Self { base: base.into() }
    }

    /// The real path of `path` (under `base`), or `NotFound` when it is hidden, outside
    /// the folder once links are resolved, or cannot be resolved at all.
    async fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let not_found = || io::Error::from(io::ErrorKind::NotFound);
        let requested = path.strip_prefix(&self.base).map_err(|_| not_found())?;
        if is_hidden(requested) {
            return Err(not_found());
        }
        // ENOENT, ENAMETOOLONG, ENOTDIR, ELOOP…: a name that cannot be resolved names
        // nothing.
        let real = tokio::fs::canonicalize(path)
            .await
            .map_err(|_| not_found())?;
        let root = tokio::fs::canonicalize(&self.base).await?;
        match real.strip_prefix(&root) {
            Ok(inside) if !is_hidden(inside) => Ok(real),
            _ => Err(not_found()),
        }
    }
}

/// Whether a component of `path` starts with a dot.
fn is_hidden(path: &Path) -> bool {
    path.components().any(|component| match component {
        Component::Normal(name) => name.as_encoded_bytes().starts_with(b"."),
        _ => true,
    })
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl Backend for Confined {
    type File = TokioFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = BoxFuture<TokioFile>;
    type MetadataFuture = BoxFuture<std::fs::Metadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let this = self.clone();
        Box::pin(async move { TokioBackend.open(this.resolve(&path).await?).await })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let this = self.clone();
        Box::pin(async move { TokioBackend.metadata(this.resolve(&path).await?).await })
    }
}
