//! NATS JetStream delivery for `nats` integrations: each event is published to the
//! integration's subject with its event id as `Nats-Msg-Id`, so that JetStream drops a second
//! copy within the stream's duplicate window (a retry after a lost acknowledgement). The
//! publish counts as delivered once JetStream acknowledges it (stored in a stream).

use std::sync::Arc;
use std::time::Duration;

use stockroom_store::Attempt;
use tokio::sync::Mutex;

/// The connection to the NATS server, made on first use and kept (async-nats reconnects by
/// itself).
#[derive(Clone, Default)]
pub struct NatsLink {
    context: Arc<Mutex<Option<async_nats::jetstream::Context>>>,
}

impl std::fmt::Debug for NatsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsLink")
    }
}

impl NatsLink {
    async fn context(&self, url: &str) -> Result<async_nats::jetstream::Context, String> {
        let mut held = self.context.lock().await;
        if let Some(context) = held.as_ref() {
            return Ok(context.clone());
        }
        let client = async_nats::ConnectOptions::new()
            .name("stockroom")
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
        let context = async_nats::jetstream::new(client);
        *held = Some(context.clone());
        Ok(context)
    }
}

fn failed(detail: String) -> Attempt {
    Attempt {
        succeeded: false,
        status_code: None,
        body: String::new(),
        error_detail: detail,
    }
}

/// Publishes one event through `link` to the NATS server at `url` and waits for JetStream's
/// acknowledgement (within `timeout`, the delivery timeout).
pub async fn publish(
    link: &NatsLink,
    url: Option<&str>,
    timeout: Duration,
    subject: &str,
    event: &str,
    body: Vec<u8>,
) -> Attempt {
    let Some(url) = url else {
        return failed("no NATS server is configured (--nats-url)".into());
    };
    let work = async {
        let context = link.context(url).await?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event);
        headers.insert("Content-Type", "application/json");
        let ack = context
            .publish_with_headers(subject.to_owned(), headers, body.into())
            .await
            .map_err(|e| format!("cannot publish to {subject}: {e}"))?
            .await
            .map_err(|e| format!("JetStream did not acknowledge {subject}: {e}"))?;
        Ok::<_, String>(ack)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(ack)) => Attempt {
            succeeded: true,
            status_code: None,
            body: format!(
                "stream {} sequence {}{}",
                ack.stream,
                ack.sequence,
                if ack.duplicate { " (duplicate)" } else { "" }
            ),
            error_detail: String::new(),
        },
        Ok(Err(e)) => failed(e),
        Err(_) => failed("JetStream did not acknowledge in time".into()),
    }
}
