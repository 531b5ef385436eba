//! A site of another origin for the browser tests: a local HTTP server that serves one HTML page
//! at `/`, as a shop embedding confab's widget would. It listens on its own port, so it is
//! another origin than confab's stack (an origin is scheme, host and port).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use tokio::net::TcpListener;

/// A running site; it stops when dropped.
pub struct HostPage {
    /// The site's origin, as a browser names it (`http://localhost:<port>`).
    pub origin: String,
    page: Arc<Mutex<String>>,
    server: tokio::task::JoinHandle<()>,
}

impl HostPage {
    /// A site on `localhost` and a free port, serving an empty page until [`HostPage::show`].
    pub async fn start() -> HostPage {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let page = Arc::new(Mutex::new(String::new()));
        let app = Router::new()
            .route("/", get(serve))
            .with_state(page.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HostPage {
            origin: format!("http://localhost:{port}"),
            page,
            server,
        }
    }

    /// Serve `html` at `/` from now on.
    pub fn show(&self, html: String) {
        *self.page.lock().unwrap() = html;
    }
}

async fn serve(State(page): State<Arc<Mutex<String>>>) -> Html<String> {
    Html(page.lock().unwrap().clone())
}

impl Drop for HostPage {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A shop's page that embeds the widget of `confab` (its base URL) for `channel_id`, with
/// `attributes` added to the script tag. It notes the page's globals before the widget loads,
/// so a test can tell what the widget added, and styles every `div` red, which must not reach
/// the widget.
pub fn shop_with_widget(confab: &str, channel_id: &str, attributes: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>A shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ font-family: serif; background: #fffbe8; }} div {{ color: red !important; }}</style>
<script>window.globalsBefore = Object.keys(window);</script>
</head><body>
<h1>Welcome to the shop</h1>
<div>Everything is on sale.</div>
<script src="{confab}/widget.js" data-channel-id="{channel_id}" {attributes} async></script>
</body></html>"#
    )
}
