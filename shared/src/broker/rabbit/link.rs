//! The connection to RabbitMQ, re-established on demand: a broker restart or a
//! dropped connection costs a reconnect, not the service.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::topology::{self, Names};
use crate::broker::BrokerError;
use crate::config::BrokerSettings;

/// How long one connection attempt (TCP, AMQP handshake, topology) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub fn unavailable(e: lapin::Error) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

/// One established connection and its publishing channel (confirm mode; lapin orders
/// confirms per channel, so all publishers share it).
#[derive(Clone)]
pub struct Live {
    pub connection: Arc<Connection>,
    pub publisher: Channel,
}

impl Live {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

pub struct Link {
    url: String,
    /// Extra CA certificates (PEM) for `amqps://`.
    ca_pem: Option<String>,
    connection_name: String,
    pub names: Names,
    pub settings: BrokerSettings,
    current: Mutex<Option<Live>>,
    /// Cancelled by `close`: no more reconnects, subscriptions end.
    pub closed: CancellationToken,
}

impl Link {
    pub fn new(url: String, ca_pem: Option<String>, connection_name: String, settings: BrokerSettings) -> Self {
        Self {
            url,
            ca_pem,
            connection_name,
            names: Names::new(&settings.queue_prefix),
            settings,
            current: Mutex::new(None),
            closed: CancellationToken::new(),
        }
    }

    /// The current connection, or a new one when it was lost. Concurrent callers wait
    /// for the same attempt rather than opening one connection each.
    pub async fn live(&self) -> Result<Live, BrokerError> {
        let mut current = self.current.lock().await;
        if self.closed.is_cancelled() {
            return Err(BrokerError::Unavailable("the broker connection was closed".into()));
        }
        if let Some(live) = current.as_ref().filter(|l| l.usable()) {
            return Ok(live.clone());
        }
        if let Some(stale) = current.take() {
            tracing::warn!(connection = %self.connection_name, "broker connection lost; reconnecting");
            drop_connection(stale);
        }
        let live = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| BrokerError::Unavailable(format!("no broker connection within {CONNECT_TIMEOUT:?}")))??;
        *current = Some(live.clone());
        Ok(live)
    }

    /// Forget `failed` (if it is still current) so the next `live` reconnects.
    pub async fn invalidate(&self, failed: &Live) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|l| Arc::ptr_eq(&l.connection, &failed.connection)) {
            if let Some(stale) = current.take() {
                drop_connection(stale);
            }
        }
    }

    /// No more reconnects; closing the connection returns unsettled deliveries to their queues.
    pub async fn close(&self) {
        self.closed.cancel();
        let live = self.current.lock().await.take();
        if let Some(live) = live {
            if live.connection.status().connected() {
                let _ = live.connection.close(200, "shutting down").await;
            }
        }
    }

    async fn connect(&self) -> Result<Live, BrokerError> {
        let props = ConnectionProperties::default().with_connection_name(self.connection_name.clone().into());
        // The system roots verify an amqps:// server; `ca_pem` adds to them.
        let tls = OwnedTLSConfig { identity: None, cert_chain: self.ca_pem.clone() };
        let connection = Connection::connect_with_config(&self.url, props, tls).await.map_err(|e| {
            BrokerError::Unavailable(crate::tls::hint_unknown_issuer(e.to_string(), "broker.tls_ca_file"))
        })?;
        // Declaring on every connect is idempotent and recreates what a broker lost.
        topology::declare(&connection, &self.names, self.settings.delivery_limit).await.map_err(unavailable)?;
        let publisher = connection.create_channel().await.map_err(unavailable)?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(unavailable)?;
        tracing::info!(connection = %self.connection_name, "broker connected");
        Ok(Live { connection: Arc::new(connection), publisher })
    }
}

/// Close a connection we stopped using (half-broken ones included) without waiting on it.
fn drop_connection(stale: Live) {
    if stale.connection.status().connected() {
        tokio::spawn(async move {
            let _ = stale.connection.close(200, "replaced").await;
        });
    }
}
