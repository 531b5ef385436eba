//! Reading one request's events again from the reply log (the stream queue every streamed
//! turn's events are also published to): from a little before the request started, keeping only
//! its own events, through to the live tail. A reconnecting client's stream is read this way on
//! whichever ingress it reaches, whether or not the first one is still there.

use confab_contract::Names;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::{Channel, Connection};
use uuid::Uuid;

use super::RelayError;

/// Events a log reader takes before acknowledging; a stream consumer needs a limit.
const PREFETCH: u16 = 512;

/// Ends the reader when dropped (streams are consumed on a channel of their own), holding a
/// handle of its consumer so that it is cancelled before its channel closes.
pub struct LogTeardown {
    channel: Channel,
    consumer: Option<lapin::Consumer>,
}

impl Drop for LogTeardown {
    fn drop(&mut self) {
        let channel = self.channel.clone();
        let consumer = self.consumer.take();
        tokio::spawn(async move { confab_contract::close_log_reader(&channel, consumer).await });
    }
}

/// A consumer of the reply log positioned at `request_id`'s start.
pub async fn open(
    connection: &Connection,
    names: &Names,
    request_id: Uuid,
) -> Result<(Channel, lapin::Consumer, LogTeardown), RelayError> {
    let channel = connection.create_channel().await?;
    let mut teardown = LogTeardown {
        channel: channel.clone(),
        consumer: None,
    };
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            names.reply_log().as_str().into(),
            format!("resume-{}", request_id.simple()).as_str().into(),
            BasicConsumeOptions::default(),
            confab_contract::reply_log_from(request_id),
        )
        .await?;
    teardown.consumer = Some(consumer.clone());
    Ok((channel, consumer, teardown))
}
