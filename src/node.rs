//! A running signer: keys, a granter, and one supervisor per validator node.
//!
//! Single-node mode grants from local state files; cluster mode (a
//! `[cluster]` section) grants through Raft. Everything else is shared.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::cluster::keygen::ShareSlot;
use crate::config::{ChainConfig, ChainMode, Config, YubihsmAdapter};
use crate::grant::floor::{Floor, FloorGranter};
use crate::grant::{Granter, LocalGranter};
use crate::keys::loss::KeyLoss;
use crate::keys::{self, ConsensusSigner};
use crate::session::{ChainSigner, Context, Supervisor, SupervisorConfig};
use crate::threshold::{KeyShare, Participant};
use crate::transport::{Address, Timeouts};
use crate::watermark::{SignState, StateFile, StateFileError};

/// Errors starting a node. Each names what the operator must fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key could not be loaded.
    #[error("{0}")]
    Key(#[from] keys::Error),
    /// A state file is missing or corrupt.
    #[error(
        "{0}\n  (start with --allow-empty-state to begin from an empty watermark; a corrupt file is kept aside, never deleted)"
    )]
    State(StateFileError),
    /// A state file could not be written.
    #[error("{0}")]
    StateWrite(StateFileError),
    /// The configuration is inconsistent at run time.
    #[error("{0}")]
    Config(String),
    /// The cluster failed.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::Error),
}

/// Start-up options from the command line.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Begin from an empty watermark when a state file is missing or
    /// corrupt (a corrupt file is renamed aside first).
    pub allow_empty_state: bool,
    /// Cluster mode: with an empty Raft store, join a running cluster as a
    /// learner (see `cluster::identity`).
    pub join: bool,
}

/// Loads one key per chain from the providers.
///
/// # Errors
///
/// A key file that is missing, unreadable, world-readable or malformed, or
/// an HSM that cannot be reached.
pub fn load_signers(config: &Config) -> Result<BTreeMap<String, Arc<dyn ConsensusSigner>>, Error> {
    let mut signers: BTreeMap<String, Arc<dyn ConsensusSigner>> = BTreeMap::new();
    for soft in &config.providers.softsign {
        keys::softsign::check_permissions(&soft.path)?;
        let signer: Arc<dyn ConsensusSigner> = Arc::new(keys::softsign::SoftSigner::load_type(
            &soft.path,
            soft.key_type,
        )?);
        for chain in &soft.chain_ids {
            signers.insert(chain.clone(), signer.clone());
        }
    }
    for hsm in &config.providers.yubihsm {
        keys::softsign::check_permissions(&hsm.auth.password_file)?;
        let password = std::fs::read_to_string(&hsm.auth.password_file)
            .map_err(|e| keys::Error::Key(format!("{}: {e}", hsm.auth.password_file.display())))?;
        let connector = match &hsm.adapter {
            YubihsmAdapter::Usb { serial_number } => keys::yubihsm::Connector::Usb {
                serial: serial_number.clone(),
            },
            YubihsmAdapter::Http { addr, port } => keys::yubihsm::Connector::Http {
                addr: addr.clone(),
                port: *port,
            },
            YubihsmAdapter::Mock => mock_connector()?,
        };
        let client = keys::yubihsm::connect(&connector, hsm.auth.key, password.trim())?;
        for key in &hsm.keys {
            let signer: Arc<dyn ConsensusSigner> =
                Arc::new(keys::yubihsm::YubiHsmSigner::new(client.clone(), key.key)?);
            for chain in &key.chain_ids {
                signers.insert(chain.clone(), signer.clone());
            }
        }
    }
    for p11 in &config.providers.pkcs11 {
        let token = pkcs11_token(p11)?;
        for key in &p11.keys {
            let key_ref = match (&key.label, &key.id) {
                (Some(label), _) => keys::pkcs11::KeyRef::Label(label.clone()),
                (None, Some(id)) => keys::pkcs11::KeyRef::Id(
                    hex::decode(id)
                        .map_err(|_| Error::Config(format!("pkcs11 key id {id:?} is not hex")))?,
                ),
                (None, None) => return Err(Error::Config("pkcs11 key without label or id".into())),
            };
            let signer: Arc<dyn ConsensusSigner> = Arc::new(keys::pkcs11::Pkcs11Signer::new(
                token.clone(),
                key_ref,
                key.key_type,
                p11.sessions,
            )?);
            for chain in &key.chain_ids {
                signers.insert(chain.clone(), signer.clone());
            }
        }
    }
    check_key_types(config, &signers)?;
    Ok(signers)
}

/// Loads this node's share of every threshold-mode chain and checks it
/// against the chain's `[chain.threshold]` and this node's id.
///
/// # Errors
///
/// A share file that is missing, readable by others, malformed, of
/// another chain or node, or of another t-of-n.
pub fn load_shares(config: &Config) -> Result<Participant, Error> {
    let mut shares = Vec::new();
    for chain in &config.chain {
        let (ChainMode::Threshold, Some(t)) = (chain.mode, &chain.threshold) else {
            continue;
        };
        if !t.share_file.exists() {
            warn!(chain_id = %chain.id, file = %t.share_file.display(),
                "no threshold share yet: this node signs nothing for the chain until \
                 `quorumkms threshold dkg` makes one (or `threshold split` puts one there)");
            continue;
        }
        let share = KeyShare::load(&t.share_file, Some(&chain.id))?;
        let file = t.share_file.display();
        if (share.threshold(), share.shares()) != (t.threshold, t.shares) {
            return Err(Error::Config(format!(
                "chain {}: {file} is a {}-of-{} share, the config says {}-of-{}",
                chain.id,
                share.threshold(),
                share.shares(),
                t.threshold,
                t.shares
            )));
        }
        if let Some(cluster) = &config.cluster
            && share.node() != cluster.node_id
        {
            return Err(Error::Config(format!(
                "chain {}: {file} is node {}'s share, and this is node {}",
                chain.id,
                share.node(),
                cluster.node_id
            )));
        }
        info!(chain_id = %chain.id, node = share.node(), threshold = t.threshold, shares = t.shares,
            "loaded threshold share");
        shares.push(share);
    }
    Ok(Participant::new(shares))
}

/// Where each threshold-mode chain's share goes when a key generation
/// makes one.
fn share_slots(config: &Config) -> BTreeMap<String, ShareSlot> {
    config
        .chain
        .iter()
        .filter(|c| c.mode == ChainMode::Threshold)
        .filter_map(|c| {
            let t = c.threshold.as_ref()?;
            Some((
                c.id.clone(),
                ShareSlot {
                    file: t.share_file.clone(),
                    threshold: t.threshold,
                    shares: t.shares,
                },
            ))
        })
        .collect()
}

/// The token a `[[providers.pkcs11]]` names, with its PIN read from its
/// 0600 file.
///
/// # Errors
///
/// A PIN file that is missing or readable by others.
pub fn pkcs11_token(p11: &crate::config::Pkcs11Config) -> Result<Arc<keys::pkcs11::Token>, Error> {
    keys::softsign::check_permissions(&p11.pin_file)?;
    let pin = zeroize::Zeroizing::new(
        std::fs::read_to_string(&p11.pin_file)
            .map_err(|e| keys::Error::Key(format!("{}: {e}", p11.pin_file.display())))?
            .trim()
            .to_string(),
    );
    let selector = match (&p11.token_label, p11.slot) {
        (Some(label), _) => keys::pkcs11::TokenSelector::Label(label.clone()),
        (None, Some(slot)) => keys::pkcs11::TokenSelector::Slot(slot),
        (None, None) => {
            return Err(Error::Config(
                "providers.pkcs11: token_label or slot is required".into(),
            ));
        }
    };
    Ok(keys::pkcs11::Token::new(p11.module.clone(), selector, pin))
}

/// Refuses a key whose type a validator of the chain cannot use: the
/// config says which type each key has, and an HSM may hold another.
fn check_key_types(
    config: &Config,
    signers: &BTreeMap<String, Arc<dyn ConsensusSigner>>,
) -> Result<(), Error> {
    for v in &config.validator {
        if let Some(signer) = signers.get(&v.chain_id) {
            let key_type = signer.key_type();
            if !v.protocol_version.supports_key_type(key_type) {
                return Err(Error::Config(format!(
                    "chain {}: its key is {key_type}, which the CometBFT {} validator at {} cannot use \
                     (secp256k1 consensus keys need protocol_version = \"v1.0\")",
                    v.chain_id, v.protocol_version, v.addr
                )));
            }
        }
    }
    Ok(())
}

#[cfg(any(feature = "mockhsm", test))]
fn mock_connector() -> Result<keys::yubihsm::Connector, Error> {
    Ok(keys::yubihsm::Connector::Mock)
}

#[cfg(not(any(feature = "mockhsm", test)))]
fn mock_connector() -> Result<keys::yubihsm::Connector, Error> {
    Err(Error::Config(
        "providers.yubihsm.adapter: type \"mock\" needs a debug build with the mockhsm feature"
            .into(),
    ))
}

/// Loads a chain's state file, or begins empty when allowed.
fn load_state(chain: &ChainConfig, options: &Options) -> Result<SignState, Error> {
    let file = StateFile::new(&chain.state_file);
    match file.load() {
        Ok(state) => Ok(state),
        Err(e @ (StateFileError::Missing(_) | StateFileError::Corrupt { .. }))
            if options.allow_empty_state =>
        {
            if matches!(e, StateFileError::Corrupt { .. }) {
                let aside = chain.state_file.with_extension("corrupt");
                std::fs::rename(&chain.state_file, &aside).map_err(|io| {
                    Error::Config(format!(
                        "cannot move {} aside: {io}",
                        chain.state_file.display()
                    ))
                })?;
                warn!(file = %aside.display(), "corrupt state file kept aside");
            }
            warn!(chain_id = %chain.id, "starting from an empty watermark");
            let empty = SignState::default();
            file.save(&empty).map_err(Error::StateWrite)?;
            Ok(empty)
        }
        Err(e) => Err(Error::State(e)),
    }
}

/// Runs the node until `shutdown` completes.
///
/// # Errors
///
/// Start-up failures; once running, connection problems are logged and
/// retried, never fatal.
pub async fn run(
    config: Config,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let signers = load_signers(&config)?;
    for (chain, signer) in &signers {
        crate::cluster::admin::status::publish_key(chain, &signer.public_key());
    }
    let metrics_server = match &config.metrics {
        Some(m) => Some(
            crate::metrics::serve(&m.listen)
                .await
                .map_err(|e| Error::Config(format!("metrics.listen {}: {e}", m.listen)))?,
        ),
        None => None,
    };
    // Flipped through the cluster's admin API to rehearse an HSM failure;
    // every key this node signs with goes through it, in either mode.
    let key_loss = KeyLoss::default();
    let mut ready_senders = Vec::new();
    let mut cluster_node: Option<crate::cluster::Node> = None;
    let mut background = Vec::new();
    let mut state_locks = Vec::new();
    // The signer each chain's sessions use: in single-node mode, one that
    // reuses the signature the granter made for the state file.
    let mut session_signers = signers.clone();
    // Threshold-mode chains' signers (cluster mode only).
    let mut threshold_signers = BTreeMap::new();
    if options.join && config.cluster.is_none() {
        return Err(Error::Config(
            "--join: only a cluster node joins; this config has no [cluster] section".into(),
        ));
    }
    // Where each chain's watermark starts while it has none.
    let floors = config
        .chain
        .iter()
        .map(|chain| Ok((chain.id.clone(), chain.floor().map_err(Error::Config)?)))
        .collect::<Result<BTreeMap<String, Floor>, Error>>()?;
    let (granter, ready): (Arc<dyn Granter>, watch::Receiver<bool>) = match &config.cluster {
        None => {
            let mut local = LocalGranter::new();
            for chain in &config.chain {
                let signer = key_loss.guard(signer_for(&signers, &chain.id)?);
                // Held while the node runs, so `state import` cannot change
                // the file underneath it.
                let lock = StateFile::new(&chain.state_file)
                    .try_lock()
                    .map_err(|e| Error::Config(e.to_string()))?;
                state_locks.push(lock);
                let state = load_state(chain, &options)?;
                info!(chain_id = %chain.id, watermark = ?state.position, "loaded state");
                if state.position.is_none() && floors.get(&chain.id) == Some(&Floor::Unset) {
                    warn!(
                        chain_id = %chain.id,
                        "the state file is empty and the chain has no `floor`: nothing will be \
                         signed until you set one or run `quorumkms state import`"
                    );
                }
                local.add_chain(
                    chain.id.clone(),
                    StateFile::new(&chain.state_file),
                    state,
                    signer,
                );
                if let Some(signer) = local.signer(&chain.id) {
                    session_signers.insert(chain.id.clone(), signer);
                }
            }
            // Single-node mode is always ready to sign.
            crate::metrics::global().set_ready(true);
            let files: Vec<(String, StateFile)> = config
                .chain
                .iter()
                .map(|c| (c.id.clone(), StateFile::new(&c.state_file)))
                .collect();
            let loss = key_loss.clone();
            crate::metrics::page::set_source(move || {
                let chains: Vec<_> = files
                    .iter()
                    .map(|(id, file)| (id.clone(), file.load().map_err(|e| e.to_string())))
                    .collect();
                crate::metrics::page::View::single(&chains, loss.is_lost())
            });
            let (tx, rx) = watch::channel(true);
            ready_senders.push(tx);
            (Arc::new(FloorGranter::new(Arc::new(local), floors)), rx)
        }
        Some(cluster) => {
            let mut deps = crate::cluster::Deps::for_config(cluster, key_loss.clone())?;
            deps.join = options.join;
            deps.participant = Arc::new(load_shares(&config)?);
            deps.share_slots = share_slots(&config);
            let node = crate::cluster::run_node(cluster.clone(), deps).await?;
            for chain in config
                .chain
                .iter()
                .filter(|c| c.mode == ChainMode::Threshold)
            {
                let group = node.threshold_signer(&chain.id);
                if let Some(key) = group.public_key() {
                    crate::cluster::admin::status::publish_key(&chain.id, &key);
                }
                threshold_signers.insert(chain.id.clone(), group);
            }
            // For operators: which peers answer, on the status page and
            // in `cluster status`.
            node.probe_peers(Duration::from_secs(1));
            if let Some(tls) = &cluster.tls {
                observe_certificate(&tls.cert);
            }
            let page_node = node.clone();
            crate::metrics::page::set_source(move || {
                crate::metrics::page::View::cluster(&page_node.status())
            });
            // The alerting gauges that come from the status (peer probes,
            // lag, quorum margin, last signature), each second.
            let status_node = node.clone();
            background.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    crate::metrics::page::observe_status(&status_node.status());
                }
            }));
            let (tx, rx) = watch::channel(false);
            // Keep the validator through an ordinary election: a session
            // holds a request for up to the grant timeout anyway.
            let grace = Duration::from_millis(cluster.grant_timeout_ms);
            tokio::spawn(track_quorum(node.clone(), tx, grace));
            cluster_node = Some(node.clone());
            (Arc::new(FloorGranter::new(Arc::new(node), floors)), rx)
        }
    };

    // Debug builds only: a process test may ask this node to die after a
    // grant (see `grant::test_hook`).
    #[cfg(debug_assertions)]
    let granter = crate::grant::test_hook::install(granter);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for v in &config.validator {
        let chain = config
            .chain
            .iter()
            .find(|c| c.id == v.chain_id)
            .ok_or_else(|| Error::Config(format!("no chain {}", v.chain_id)))?;
        let addr: Address = v
            .addr
            .parse()
            .map_err(|e| Error::Config(format!("validator {}: {e}", v.addr)))?;
        let identity = match &v.secret_key {
            Some(path) => keys::identity::load(path)?,
            // Unix sockets need no identity; any key will do.
            None => ed25519_consensus::SigningKey::new(rand_core::OsRng),
        };
        let ctx = Context {
            chain_id: chain.id.clone(),
            version: v.protocol_version,
            granter: granter.clone(),
            signer: match threshold_signers.get(&chain.id) {
                Some(group) => ChainSigner::Threshold(Arc::clone(group)),
                None => ChainSigner::Key(key_loss.guard(signer_for(&session_signers, &chain.id)?)),
            },
            max_height: chain.max_height,
            origin: chain.height_ownership.then(|| v.owner_name()),
            max_frame: v.max_frame_bytes,
        };
        let timeout = Duration::from_millis(v.timeout_ms);
        let supervisor = Supervisor::new(
            ctx,
            SupervisorConfig {
                addr,
                identity,
                timeouts: Timeouts {
                    connect: timeout,
                    read: timeout,
                    write: timeout,
                    handshake: Duration::from_millis(v.handshake_timeout_ms),
                },
                reconnect: v.reconnect,
            },
        );
        tasks.spawn(supervisor.run(ready.clone(), stop_rx.clone()));
    }
    info!(
        validators = config.validator.len(),
        chains = config.chain.len(),
        "quorumkms started"
    );
    // A cluster node may have to stop by itself (an empty store that a
    // running cluster calls as a member).
    let fatal = async {
        match &cluster_node {
            Some(node) => Some(node.wait_fatal().await),
            None => std::future::pending().await,
        }
    };
    let fatal = tokio::select! {
        () = shutdown => None,
        error = fatal => error,
    };
    info!("shutting down");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    drop(ready_senders);
    for task in background {
        task.abort();
    }
    if let Some(node) = cluster_node {
        node.shutdown().await;
    }
    drop(state_locks);
    if let Some(server) = metrics_server {
        server.abort();
    }
    match fatal {
        Some(error) => Err(Error::Cluster(error)),
        None => Ok(()),
    }
}

/// Exports when the node's cluster certificate expires (the alert rules
/// warn ahead of it); an unreadable one is left to the TLS setup to report.
fn observe_certificate(path: &std::path::Path) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let expiry = std::fs::read(path)
        .ok()
        .and_then(|pem| CertificateDer::from_pem_slice(&pem).ok())
        .and_then(|der| crate::cluster::subject::not_after(der.as_ref()));
    if let Some(expiry) = expiry {
        crate::metrics::global()
            .ops
            .certificate_expiry
            .set(expiry as f64);
    }
}

fn signer_for(
    signers: &BTreeMap<String, Arc<dyn ConsensusSigner>>,
    chain_id: &str,
) -> Result<Arc<dyn ConsensusSigner>, Error> {
    signers
        .get(chain_id)
        .cloned()
        .ok_or_else(|| Error::Config(format!("chain {chain_id} has no key")))
}

/// Publishes whether the cluster node can get grants, so supervisors stop
/// dialling (and drop their validators) while it cannot.
///
/// A node becomes ready as soon as it has a leader with quorum, but stops
/// being ready only after it has had none for `grace` (the grant timeout),
/// or at once on a storage fault: a session holds a request that long for a
/// grant anyway, so a leader election must not cost the validator its
/// connection (CometBFT would need a ping cycle to take another signer).
pub(crate) async fn track_quorum(
    node: crate::cluster::Node,
    ready: watch::Sender<bool>,
    grace: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut lost_since: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let now = if node.has_quorum_leader() {
            lost_since = None;
            true
        } else {
            let lost = *lost_since.get_or_insert_with(tokio::time::Instant::now);
            *ready.borrow() && node.storage_fault().is_none() && lost.elapsed() < grace
        };
        crate::metrics::observe_cluster(&node);
        crate::metrics::global().set_ready(now);
        if *ready.borrow() != now {
            if now {
                info!("cluster has a leader with quorum: serving validators");
            } else {
                warn!("no leader with quorum: dropping validator connections");
            }
            if ready.send(now).is_err() {
                return;
            }
        }
    }
}
