//! One seeded run: the hosts (signer nodes, validators, the operator), the
//! fault schedule driven step by step, and the final checks.
//!
//! One cohesive thing, kept in one file on purpose: `Run` and its steps in
//! the order a seed plays them, so the order of events (which decides the
//! trace) reads top to bottom.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::dialer::{self, Serving, ValidatorNode};
use super::faults::{Active, FaultPlan, Kind};
use super::group::{self, TracedGroup};
use super::hostile::{self, Attack, Order, Orders};
use super::rogue::{self, ROGUE, ROGUE_ID, Rogue};
use super::store::SimStore;
use super::trace::{self, Trace, hash_json, short};
use super::validator::{Ledger, Spec};
use super::{
    Bug, FINISH_GRACE, MAX_ANSWER_GAP, OPERATOR_HOST, RAFT_PORT, RESUME_BOUND, RunReport,
    SETTLE_BOUND, Settings, THRESHOLD, VALIDATOR_PORT, granter, net, operator, validator,
};
use crate::cluster::{self, Deps, Node, Peer, StoreChoice};
use crate::grant::Granter;
use crate::keys::ConsensusSigner;
use crate::keys::softsign::SoftSigner;
use crate::session::ChainSigner;
use crate::threshold::{KeyShare, Participant, dealer};
use crate::validator::Checker;

fn signer_host(id: u64) -> String {
    format!("s{id}")
}

fn validator_host(chain: usize, index: usize) -> String {
    format!("c{chain}v{index}")
}

/// Attacks of the compromised member in a run with a threshold-mode
/// chain.
const ROGUE_ATTACKS: usize = 3;

/// Pause before node 1 tries `cluster init` again.
const INIT_RETRY: Duration = Duration::from_millis(50);

fn chain_id(chain: usize) -> String {
    format!("sim-chain-{chain}")
}

fn chain_key(chain: usize) -> Arc<SoftSigner> {
    let mut seed = [0u8; 32];
    seed[0] = 0xc0;
    seed[1] = chain as u8;
    Arc::new(SoftSigner::from_seed(seed))
}

/// Which chains sign in threshold mode in the run of `seed`, by chain
/// index: the last `settings.threshold_chains`, on the seeds
/// `settings.threshold_seeds` includes.
fn threshold_chains(seed: u64, settings: &Settings) -> Vec<bool> {
    let on = settings.threshold_seeds.includes(seed);
    (0..settings.chains)
        .map(|chain| on && chain + settings.threshold_chains >= settings.chains)
        .collect()
}

/// Splits every threshold-mode chain's key over signer nodes `1..=signers`
/// (every node that can vote, the spare too), `THRESHOLD` of which sign,
/// with a dealer RNG seeded from the run's seed. Returns each node's
/// shares, by node id - 1.
fn split_keys(
    seed: u64,
    threshold: &[bool],
    keys: &[Arc<SoftSigner>],
    signers: u64,
) -> Result<Vec<Vec<KeyShare>>, String> {
    let nodes: Vec<u64> = (1..=signers).collect();
    let mut by_node = vec![Vec::new(); nodes.len()];
    for (chain, key) in keys.iter().enumerate() {
        if !threshold[chain] {
            continue;
        }
        let mut rng = StdRng::seed_from_u64(seed ^ 0xdea1_e700_0000_0000 ^ chain as u64);
        let shares = dealer::split(&chain_id(chain), &key.seed(), THRESHOLD, &nodes, &mut rng)?;
        for share in shares {
            by_node[(share.node() - 1) as usize].push(share);
        }
    }
    Ok(by_node)
}

/// The seed of the nonces (and session ids) node `id` draws in its boot
/// number `boot`: a restart must never draw a nonce it drew before.
fn nonce_seed(seed: u64, id: u64, boot: u32) -> u64 {
    seed.wrapping_mul(0xff51_afd7_ed55_8ccd)
        .wrapping_add(id << 32)
        .wrapping_add(u64::from(boot))
        ^ 0x6e0c_e500_0000_0000
}

fn node_config(settings: &Settings, id: u64) -> cluster::Config {
    // The spare lists the initial members and itself; it joins through a
    // membership change, never through `initialize`.
    cluster::Config {
        node_id: id,
        listen: format!("{}:{RAFT_PORT}", signer_host(id)),
        peers: (1..=settings.nodes.max(id))
            .map(|p| Peer {
                id: p,
                addr: format!("{}:{RAFT_PORT}", signer_host(p)),
            })
            .collect(),
        data_dir: "/nonexistent/sim".into(),
        election_timeout_min_ms: cluster::default_election_timeout_min_ms(),
        election_timeout_max_ms: cluster::default_election_timeout_max_ms(),
        heartbeat_interval_ms: cluster::default_heartbeat_interval_ms(),
        grant_timeout_ms: cluster::default_grant_timeout_ms(),
        // The simulated network carries plaintext (TLS would draw OS
        // randomness and break determinism); its hosts are not loopback.
        tls: None,
        insecure_plaintext: true,
    }
}

/// Every validator node of every chain, as the signer nodes dial them.
fn validator_nodes(settings: &Settings) -> Vec<ValidatorNode> {
    (0..settings.chains)
        .flat_map(|chain| {
            (0..settings.validators_per_chain).map(move |index| ValidatorNode {
                chain_id: chain_id(chain),
                host: validator_host(chain, index),
                port: VALIDATOR_PORT,
            })
        })
        .collect()
}

type Slot = Arc<Mutex<Option<Node>>>;

fn slot_node(slot: &Slot) -> Option<Node> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn set_slot(slot: &Slot, node: Option<Node>) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = node;
}

/// Nodes that are down or refuse to grant (a storage fault stands), with
/// why.
fn unserving(slots: &[Slot]) -> Vec<(usize, String)> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(i, slot)| match slot_node(slot) {
            None => Some((i + 1, "not running".to_string())),
            Some(node) => node
                .storage_fault()
                .map(|fault| (i + 1, format!("storage fault: {fault}"))),
        })
        .collect()
}

/// Traces each node that starts or stops refusing to grant because of a
/// storage fault; `seen` holds who refused at the last look.
fn note_storage_faults(slots: &[Slot], seen: &mut [bool], trace: &Trace, now: Duration) {
    for (i, slot) in slots.iter().enumerate() {
        let Some(node) = slot_node(slot) else {
            continue;
        };
        let fault = node.storage_fault();
        if fault.is_some() != seen[i] {
            seen[i] = fault.is_some();
            match fault {
                Some(fault) => trace.event(now, format!("n{} refuses: {fault}", i + 1)),
                None => trace.event(now, format!("n{} serves again", i + 1)),
            }
        }
    }
}

/// The node that leads with the highest term, if any.
fn current_leader(slots: &[Slot]) -> Option<u64> {
    slots
        .iter()
        .filter_map(slot_node)
        .map(|n| n.metrics())
        .filter(|m| m.state == openraft::ServerState::Leader)
        .max_by_key(|m| m.current_term)
        .map(|m| m.id)
}

pub(super) fn run_inner(seed: u64, settings: &Settings, trace: &Trace, report: &mut RunReport) {
    let mut run = match Run::new(seed, settings, trace) {
        Ok(run) => run,
        Err(e) => {
            trace.violation(Duration::ZERO, format!("cannot split the keys: {e}"));
            return;
        }
    };
    run.add_signers();
    run.add_validators();
    if settings.membership {
        run.add_operator();
    }
    run.add_hostiles();
    run.add_rogue();
    let finished = run.drive(report);
    run.end_faults();
    if finished {
        run.settle_and_check();
    }
    run.record(report);
}

/// What a signer host needs to boot, and to boot again after a crash.
#[derive(Clone)]
struct SignerHost {
    id: u64,
    store: SimStore,
    slot: Slot,
    config: cluster::Config,
    trace: Trace,
    /// One key per chain.
    keys: Vec<Arc<SoftSigner>>,
    /// Which chains sign in threshold mode, by chain index.
    threshold: Vec<bool>,
    /// Its share of each threshold-mode chain's key.
    shares: Vec<KeyShare>,
    /// The run's seed, which seeds its nonces.
    run_seed: u64,
    /// Threshold signatures that failed, on any node.
    threshold_failures: group::Failures,
    /// The validator nodes it dials.
    validators: Vec<ValidatorNode>,
    /// Seed of its supervisors' backoff.
    seed: u64,
    bug: Option<Bug>,
    /// Boots so far, shared by every boot of this host.
    boots: Rc<Cell<u32>>,
    /// The spare: it starts with `--join`, to be added as a learner.
    join: bool,
}

impl SignerHost {
    /// Starts the node (after a crash: on what its disk kept) and dials
    /// every validator node until the host crashes.
    async fn boot(self) -> turmoil::Result {
        let id = self.id;
        let boot = self.boots.get();
        self.boots.set(boot + 1);
        if boot > 0 {
            let (lost, dropped) = self.store.restart();
            self.trace.event(
                trace::now(),
                format!(
                    "n{id} boots again (crash lost {lost} deferred records, disk lost {dropped} entries)"
                ),
            );
        }
        // Nonces live in memory only, as in production: each boot draws
        // from a fresh stream.
        let participant = Participant::with_rng(
            self.shares.clone(),
            Box::new(StdRng::seed_from_u64(nonce_seed(self.run_seed, id, boot))),
        );
        let deps = Deps {
            store: StoreChoice::Backend(self.store.backend()),
            transport: Arc::new(net::SimTransport),
            join: self.join,
            clock: None,
            participant: Arc::new(participant),
            ..Deps::default()
        };
        let grant_timeout = Duration::from_millis(self.config.grant_timeout_ms);
        let node = cluster::run_node(self.config.clone(), deps).await?;
        set_slot(&self.slot, Some(node.clone()));
        if id == 1 {
            // Every member must answer `cluster init`, and the others may
            // not listen yet; after a crash it finds the cluster formed (or
            // finishes what it began).
            while let Err(e) = node.initialize().await {
                if !e.is_transient() {
                    return Err(e.into());
                }
                tokio::time::sleep(INIT_RETRY).await;
            }
        }
        let granter: Arc<dyn Granter> = match self.bug {
            Some(Bug::SignBeforeCommit) => Arc::new(granter::EagerGranter::new(node.clone())),
            _ => Arc::new(node.clone()),
        };
        let granter: Arc<dyn Granter> = Arc::new(granter::BoundedGranter::new(
            granter,
            grant_timeout,
            id,
            self.trace.clone(),
        ));
        let serving = Serving {
            granter,
            signers: self.chain_signers(&node),
            validators: self.validators.clone(),
            grace: grant_timeout,
            seed: self.seed,
        };
        dialer::serve_validators(node, serving).await;
        Ok(())
    }

    /// How each chain signs on `node`: with its key, or in threshold mode
    /// through `node`'s share rounds under the group key, which must be the
    /// chain's key (a chain without one here is a violation, and left out).
    fn chain_signers(&self, node: &Node) -> Vec<(String, ChainSigner)> {
        let mut signers = Vec::new();
        for (chain, key) in self.keys.iter().enumerate() {
            let id = chain_id(chain);
            if !self.threshold[chain] {
                signers.push((id, ChainSigner::Key(key.clone())));
                continue;
            }
            let group = node.threshold_signer(&id);
            match group.public_key() {
                Some(public) if public == key.public_key() => {
                    let group = TracedGroup::new(
                        group,
                        self.id,
                        self.trace.clone(),
                        self.threshold_failures.clone(),
                    );
                    signers.push((id, ChainSigner::Threshold(Arc::new(group))));
                }
                Some(_) => self.trace.violation(
                    trace::now(),
                    format!(
                        "n{}: the group key of {id} is not its validator key",
                        self.id
                    ),
                ),
                None => self.trace.violation(
                    trace::now(),
                    format!("n{}: holds no share of {id}", self.id),
                ),
            }
        }
        signers
    }
}

/// One run: the simulation and the handles its steps share. The steps run
/// in a fixed order (signers, validators, operator, then the step loop),
/// which fixes the order of host starts and RNG draws, hence the trace.
struct Run<'a> {
    seed: u64,
    settings: &'a Settings,
    trace: &'a Trace,
    sim: turmoil::Sim<'a>,
    /// Signer hosts: the initial members, then the spare, if any (the
    /// spare's id is this count).
    signers: u64,
    /// Each signer host's disk, by id - 1.
    stores: Vec<SimStore>,
    /// Each signer host's running node, by id - 1.
    slots: Vec<Slot>,
    /// One key per chain.
    keys: Vec<Arc<SoftSigner>>,
    /// Which chains sign in threshold mode, by chain index.
    threshold: Vec<bool>,
    /// Each signer node's shares of the threshold-mode chains' keys, by
    /// id - 1.
    shares: Vec<Vec<KeyShare>>,
    /// Every host, signers first; faults act on the links between them.
    hosts: Vec<String>,
    checker: Checker,
    ledger: Ledger,
    /// Set by the operator once it has removed the spare.
    removed: operator::Removed,
    /// Nodes stopped for good (the spare, once removed).
    retired: BTreeSet<u64>,
    /// The fault in progress, if any.
    active: Option<Active>,
    /// When the last fault healed.
    last_heal: Duration,
    /// Which nodes refused to grant for a storage fault at the last look.
    storage_faults: Vec<bool>,
    /// Each hostile host's orders; dropped at the end of the fault window,
    /// which ends the hostile hosts.
    orders: Vec<Orders>,
    /// What the compromised member's requests came to.
    rogue_tally: rogue::Tallies,
    /// Threshold signatures that failed, on any node.
    threshold_failures: group::Failures,
}

impl<'a> Run<'a> {
    /// The simulation and each signer host's disk, with nothing started.
    ///
    /// # Errors
    ///
    /// The threshold-mode keys cannot be split (a bad threshold for the
    /// settings).
    fn new(seed: u64, settings: &'a Settings, trace: &'a Trace) -> Result<Run<'a>, String> {
        let sim = turmoil::Builder::new()
            .rng_seed(seed)
            .simulation_duration(
                settings.fault_window + FINISH_GRACE + SETTLE_BOUND + Duration::from_secs(10),
            )
            .tick_duration(Duration::from_millis(1))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(20))
            .enable_random_order()
            .build();
        let forget = if settings.bug == Some(Bug::ForgetTail) {
            3
        } else {
            0
        };
        let signers = settings.nodes + u64::from(settings.membership);
        let stores: Vec<SimStore> = (1..=signers)
            .map(|id| SimStore::new(id, trace.clone(), forget))
            .collect();
        let slots: Vec<Slot> = (1..=signers).map(|_| Slot::default()).collect();
        let keys: Vec<Arc<SoftSigner>> = (0..settings.chains).map(chain_key).collect();
        let threshold = threshold_chains(seed, settings);
        let shares = split_keys(seed, &threshold, &keys, signers)?;
        Ok(Run {
            seed,
            settings,
            trace,
            sim,
            signers,
            storage_faults: vec![false; slots.len()],
            stores,
            slots,
            keys,
            threshold,
            shares,
            hosts: (1..=signers).map(signer_host).collect(),
            checker: Checker::new(),
            ledger: Ledger::default(),
            removed: operator::Removed::default(),
            retired: BTreeSet::new(),
            active: None,
            last_heal: Duration::ZERO,
            orders: Vec::new(),
            rogue_tally: rogue::Tallies::default(),
            threshold_failures: group::Failures::default(),
        })
    }

    /// Adds every signer host (the spare too: it waits to be added).
    fn add_signers(&mut self) {
        for id in 1..=self.signers {
            let index = (id - 1) as usize;
            let host = SignerHost {
                id,
                store: self.stores[index].clone(),
                slot: self.slots[index].clone(),
                config: node_config(self.settings, id),
                trace: self.trace.clone(),
                keys: self.keys.clone(),
                threshold: self.threshold.clone(),
                shares: self.shares[index].clone(),
                run_seed: self.seed,
                threshold_failures: self.threshold_failures.clone(),
                validators: validator_nodes(self.settings),
                seed: self
                    .seed
                    .wrapping_mul(0x2545_f491_4f6c_dd1d)
                    .wrapping_add(id),
                bug: self.settings.bug,
                boots: Rc::new(Cell::new(0)),
                join: id > self.settings.nodes,
            };
            self.sim.host(signer_host(id), move || host.clone().boot());
        }
    }

    /// Adds each chain's validator nodes, which listen for the signer
    /// nodes.
    fn add_validators(&mut self) {
        for (chain, key) in self.keys.iter().enumerate() {
            for index in 0..self.settings.validators_per_chain {
                let name = validator_host(chain, index);
                self.hosts.push(name.clone());
                let spec = Spec {
                    name: name.clone(),
                    chain_id: chain_id(chain),
                    index,
                    port: VALIDATOR_PORT,
                    public_key: key.public_key(),
                    threshold: self.threshold[chain],
                    heights: self.settings.heights,
                    seed: self
                        .seed
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        .wrapping_add((chain * 16 + index) as u64),
                };
                self.sim.client(
                    name,
                    validator::run(
                        spec,
                        self.checker.clone(),
                        self.ledger.clone(),
                        self.trace.clone(),
                    ),
                );
            }
        }
    }

    /// Adds the operator that adds, promotes and removes the spare.
    fn add_operator(&mut self) {
        let nodes = self.settings.nodes;
        let spare = self.signers;
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x0be7_a70e_0000_0002);
        let plan = operator::OperatorPlan {
            nodes: (1..=nodes)
                .map(|id| format!("{}:{RAFT_PORT}", signer_host(id)))
                .collect(),
            spare,
            spare_addr: format!("{}:{RAFT_PORT}", signer_host(spare)),
            others: (1..=nodes).collect(),
            add_at: Duration::from_millis(rng.gen_range(1_500..6_000)),
            keep_for: Duration::from_millis(rng.gen_range(500..4_000)),
        };
        self.sim.client(
            OPERATOR_HOST,
            operator::run(plan, self.removed.clone(), self.trace.clone()),
        );
        self.hosts.push(OPERATOR_HOST.to_string());
    }

    /// Adds the hostile hosts, which wait for the fault plan's orders.
    fn add_hostiles(&mut self) {
        let chains: Vec<String> = (0..self.settings.chains).map(chain_id).collect();
        for host in hostile::HOSTS {
            let (orders, received) = tokio::sync::mpsc::unbounded_channel();
            self.orders.push(orders);
            self.sim.client(
                host,
                hostile::run(host, chains.clone(), received, self.trace.clone()),
            );
            self.hosts.push(host.to_string());
        }
    }

    /// Adds the compromised member when a chain signs in threshold mode
    /// (and its node id is an initial voter's), with [`ROGUE_ATTACKS`]
    /// attacks at seeded times in the fault window on seeded targets.
    fn add_rogue(&mut self) {
        if ROGUE_ID > self.settings.nodes {
            return;
        }
        let shares = self.shares[(ROGUE_ID - 1) as usize].clone();
        let chains: Vec<usize> = (0..self.settings.chains)
            .filter(|chain| self.threshold[*chain])
            .collect();
        if shares.is_empty() || chains.is_empty() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x0706_0e00_0000_0004);
        let targets: Vec<u64> = (1..=self.settings.nodes)
            .filter(|id| *id != ROGUE_ID)
            .collect();
        let window = self.settings.fault_window.as_millis() as u64;
        let mut attacks: Vec<rogue::Attack> = (0..ROGUE_ATTACKS)
            .map(|_| {
                let target_id = targets[rng.gen_range(0..targets.len())];
                rogue::Attack {
                    at: Duration::from_millis(rng.gen_range(1_000..window.max(1_001))),
                    target: format!("{}:{RAFT_PORT}", signer_host(target_id)),
                    target_id,
                    chain_id: chain_id(chains[rng.gen_range(0..chains.len())]),
                }
            })
            .collect();
        attacks.sort_by_key(|a| a.at);
        // Its own nonce stream: the node whose share it copied draws from
        // another.
        let participant = Participant::with_rng(
            shares.clone(),
            Box::new(StdRng::seed_from_u64(self.seed ^ 0x0706_0e00_0000_0003)),
        );
        let slots = self.slots.clone();
        let peek: rogue::Peek = Box::new(move |id| {
            let index = usize::try_from(id.checked_sub(1)?).ok()?;
            slots.get(index).and_then(slot_node)
        });
        let rogue = match Rogue::new(
            shares,
            participant,
            peek,
            self.settings.bug,
            self.rogue_tally.clone(),
            self.trace.clone(),
        ) {
            Ok(rogue) => rogue,
            Err(e) => {
                self.trace
                    .violation(Duration::ZERO, format!("cannot start the rogue: {e}"));
                return;
            }
        };
        self.sim.client(ROGUE, rogue.run(attacks));
        self.hosts.push(ROGUE.to_string());
    }

    /// Points a stale-store fault at a node whose backup may be restored:
    /// the spare while it is a learner (any node with
    /// `Settings::stale_voters`); without one, the fault is a plain crash.
    fn pick_stale_target(&self, fault: &mut Active) {
        if fault.kind != Kind::StaleRejoin || self.settings.stale_voters {
            return;
        }
        let spare = self.signers;
        let learner = self.settings.membership
            && !self.retired.contains(&spare)
            && slot_node(&self.slots[(spare - 1) as usize]).is_some()
            && current_leader(&self.slots)
                .and_then(|leader| slot_node(&self.slots[(leader - 1) as usize]))
                .is_some_and(|leader| {
                    let metrics = leader.metrics();
                    let membership = metrics.membership_config.membership();
                    membership.learner_ids().any(|id| id == spare)
                });
        if learner {
            fault.node = spare;
        } else {
            fault.kind = Kind::CrashNode;
        }
    }

    /// Stops `node` and puts the backup of its disk in place.
    fn restore_stale(&mut self, node: u64, now: Duration) {
        let target = signer_host(node);
        set_slot(&self.slots[(node - 1) as usize], None);
        self.sim.crash(target.as_str());
        let restored = self.stores[(node - 1) as usize].restore_backup();
        self.trace
            .event(now, format!("{target} restored from a backup: {restored}"));
    }

    /// Sends a hostile host the order to attack `fault.node`.
    fn order_attack(&self, fault: &Active, attack: Attack) {
        let host = fault.other % hostile::HOSTS.len();
        let order = Order {
            attack,
            target: format!("{}:{RAFT_PORT}", signer_host(fault.node)),
        };
        self.trace.event(
            self.sim.elapsed(),
            format!("hostile {} ordered to {attack:?}", hostile::HOSTS[host]),
        );
        if let Some(orders) = self.orders.get(host) {
            let _ = orders.send(order);
        }
    }

    /// The step loop: injects and heals faults until the validators finish
    /// (true), or a host fails, a check fails or time runs out (false).
    fn drive(&mut self, report: &mut RunReport) -> bool {
        let deadline = self.settings.fault_window + FINISH_GRACE;
        let mut plan = FaultPlan::new(
            self.seed,
            Duration::from_secs(1),
            self.settings.fault_window,
        );
        loop {
            let now = self.sim.elapsed();
            report.sim_time = now;
            self.retire_removed(now);
            if self.active.as_ref().is_some_and(|fault| now >= fault.until) {
                self.heal_active(now);
                plan.rest(now);
            }
            if self.active.is_none() && now >= plan.next_at && now < plan.window_end {
                let mut fault = plan.draw(now, self.settings.nodes, current_leader(&self.slots));
                self.pick_stale_target(&mut fault);
                self.inject(&fault, now);
                *report.faults.entry(fault.kind.name()).or_default() += 1;
                self.active = Some(fault);
            }
            if now >= plan.window_end {
                self.orders.clear();
            }
            match self.sim.step() {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    let text = e.to_string();
                    if text.contains("Ran for duration") {
                        self.trace
                            .violation(now, format!("stall: the run did not finish: {text}"));
                    } else {
                        self.trace.violation(now, format!("host failed: {text}"));
                    }
                    return false;
                }
            }
            if now.as_millis().is_multiple_of(16) {
                note_storage_faults(&self.slots, &mut self.storage_faults, self.trace, now);
            }
            if now.as_millis().is_multiple_of(64) && !self.trace.violations().is_empty() {
                return false;
            }
            if now > deadline {
                self.trace
                    .violation(now, "stall: the validators did not finish in time");
                return false;
            }
        }
    }

    /// After the step loop: stops the spare if it was removed and heals
    /// the fault still in progress.
    fn end_faults(&mut self) {
        let now = self.sim.elapsed();
        self.retire_removed(now);
        self.heal_active(now);
    }

    /// Lets every node still in the cluster come back and catch up, then
    /// checks that each serves and runs the end-of-run checks.
    fn settle_and_check(&mut self) {
        let live = |id: &u64| !self.retired.contains(id);
        let stores: Vec<SimStore> = (1..=self.signers)
            .filter(live)
            .map(|id| self.stores[(id - 1) as usize].clone())
            .collect();
        let slots: Vec<Slot> = (1..=self.signers)
            .filter(live)
            .map(|id| self.slots[(id - 1) as usize].clone())
            .collect();
        let settle_until = self.sim.elapsed() + SETTLE_BOUND;
        while self.sim.elapsed() < settle_until {
            let states: Vec<_> = stores.iter().map(SimStore::applied_state).collect();
            if states.iter().all(|s| *s == states[0]) && unserving(&slots).is_empty() {
                break;
            }
            let now = self.sim.elapsed();
            if now.as_millis().is_multiple_of(16) {
                note_storage_faults(&slots, &mut self.storage_faults, self.trace, now);
            }
            if let Err(e) = self.sim.step() {
                self.trace.violation(
                    self.sim.elapsed(),
                    format!("host failed while settling: {e}"),
                );
                break;
            }
        }
        for (id, why) in unserving(&slots) {
            self.trace.violation(
                self.sim.elapsed(),
                format!("n{id} does not serve after every fault healed: {why}"),
            );
        }
        self.final_checks(&stores, self.sim.elapsed());
    }

    /// Copies the run's totals into `report` and traces each node's final
    /// state.
    fn record(&self, report: &mut RunReport) {
        report.sim_time = self.sim.elapsed();
        let ledger = self.ledger.lock();
        report.signatures = ledger.signatures;
        report.threshold_signatures = ledger.threshold_signatures;
        report.threshold_failures = self.threshold_failures.load(Ordering::Relaxed);
        let tally = *self.rogue_tally.lock().unwrap_or_else(|p| p.into_inner());
        report.rogue_refused = tally.refused;
        report.rogue_granted = tally.granted;
        report.refusals = ledger.refusals;
        report.retries = ledger.retries;
        report.missed = ledger.missed;
        for (i, store) in self.stores.iter().enumerate() {
            let state = store.applied_state();
            self.trace.event(
                report.sim_time,
                format!("final n{} state {}", i + 1, short(&hash_json(&state))),
            );
        }
    }

    fn inject(&mut self, fault: &Active, now: Duration) {
        let target = signer_host(fault.node);
        self.trace.event(
            now,
            format!(
                "FAULT {} {target} until {}ms",
                fault.kind.name(),
                fault.until.as_millis()
            ),
        );
        let others: Vec<&String> = self.hosts.iter().filter(|h| **h != target).collect();
        match fault.kind {
            Kind::PartitionLeader | Kind::PartitionFollower => {
                for other in others {
                    self.sim.hold(target.as_str(), other.as_str());
                }
            }
            Kind::CrashLeader | Kind::CrashNode => {
                set_slot(&self.slots[(fault.node - 1) as usize], None);
                self.sim.crash(target.as_str());
            }
            Kind::Hold => {
                let other = others[fault.other % others.len()];
                self.trace.event(now, format!("hold {target} <-> {other}"));
                self.sim.hold(target.as_str(), other.as_str());
            }
            Kind::LatencySpike => {
                for other in others {
                    self.sim.set_link_max_message_latency(
                        target.as_str(),
                        other.as_str(),
                        fault.latency,
                    );
                }
            }
            Kind::DiskFull => self.stores[(fault.node - 1) as usize].set_full(true),
            Kind::HostileSnapshot => self.order_attack(fault, Attack::Snapshot),
            Kind::HostileRaise => self.order_attack(fault, Attack::Raise),
            Kind::HostileWrongCluster => self.order_attack(fault, Attack::WrongCluster),
            Kind::StaleRejoin => self.restore_stale(fault.node, now),
        }
    }

    /// Stops the spare node for good once the operator has removed it (an
    /// operator stops a removed node's process).
    fn retire_removed(&mut self, now: Duration) {
        let spare = self.signers;
        if !self.removed.load(Ordering::SeqCst) || !self.retired.insert(spare) {
            return;
        }
        let host = signer_host(spare);
        self.trace
            .event(now, format!("stop {host}: removed from the cluster"));
        set_slot(&self.slots[(spare - 1) as usize], None);
        let down = self.active.as_ref().is_some_and(|f| {
            f.node == spare
                && matches!(
                    f.kind,
                    Kind::CrashLeader | Kind::CrashNode | Kind::StaleRejoin
                )
        });
        if !down {
            self.sim.crash(host.as_str());
        }
    }

    /// Heals the fault in progress, if any, and takes a backup of every
    /// disk (what a stale-store fault later restores).
    fn heal_active(&mut self, now: Duration) {
        if let Some(fault) = self.active.take() {
            self.heal(&fault, now);
            self.last_heal = now;
            for store in &self.stores {
                store.take_backup();
            }
        }
    }

    fn heal(&mut self, fault: &Active, now: Duration) {
        let target = signer_host(fault.node);
        self.trace
            .event(now, format!("HEAL {} {target}", fault.kind.name()));
        let others: Vec<&String> = self.hosts.iter().filter(|h| **h != target).collect();
        match fault.kind {
            Kind::PartitionLeader | Kind::PartitionFollower => {
                for other in others {
                    self.sim.release(target.as_str(), other.as_str());
                }
            }
            Kind::CrashLeader | Kind::CrashNode | Kind::StaleRejoin => {
                if !self.retired.contains(&fault.node) {
                    self.sim.bounce(target.as_str());
                }
            }
            Kind::Hold => {
                let other = others[fault.other % others.len()];
                self.sim.release(target.as_str(), other.as_str());
            }
            Kind::LatencySpike => {
                for other in others {
                    self.sim.set_link_max_message_latency(
                        target.as_str(),
                        other.as_str(),
                        Duration::from_millis(20),
                    );
                }
            }
            Kind::DiskFull => self.stores[(fault.node - 1) as usize].set_full(false),
            // An attack is over once sent; its effects are checked on
            // every write.
            Kind::HostileSnapshot | Kind::HostileRaise | Kind::HostileWrongCluster => {}
        }
    }

    /// The end-of-run checks on what the validators received and what the
    /// nodes hold.
    fn final_checks(&self, stores: &[SimStore], end: Duration) {
        let report = self.checker.report();
        if report.conflicts > 0 || report.invalid > 0 {
            self.trace.violation(
                end,
                format!(
                    "checker: {} conflicting and {} invalid signatures at {:?}",
                    report.conflicts,
                    report.invalid,
                    self.checker.conflicting_positions()
                ),
            );
        }
        let states: Vec<_> = stores.iter().map(SimStore::applied_state).collect();
        for (i, state) in states.iter().enumerate().skip(1) {
            if state.chains != states[0].chains || state.last_applied != states[0].last_applied {
                self.trace.violation(
                    end,
                    format!(
                        "final states differ: n1 at {:?}, n{} at {:?}",
                        states[0].last_applied.map(|l| l.index),
                        i + 1,
                        state.last_applied.map(|l| l.index)
                    ),
                );
            }
        }
        let ledger = self.ledger.lock();
        // No signature is lost: each is at or below every node's watermark,
        // and one at the watermark is exactly the stored payload.
        for (i, state) in states.iter().enumerate() {
            let mut lost_count = 0;
            let mut first_lost = None;
            for (chain, position, bytes) in &ledger.signed {
                let chain_state = state.chains.get(chain);
                let lost = match chain_state.and_then(|s| s.position) {
                    None => true,
                    Some(mark) if mark < *position => true,
                    Some(mark) if mark == *position => {
                        chain_state.is_some_and(|s| s.sign_bytes != *bytes)
                    }
                    Some(_) => false,
                };
                if lost {
                    lost_count += 1;
                    first_lost.get_or_insert_with(|| {
                        format!(
                            "{chain} {position} was signed but n{} holds {:?}",
                            i + 1,
                            chain_state.and_then(|s| s.position).map(|p| p.to_string())
                        )
                    });
                }
            }
            if let Some(first) = first_lost {
                self.trace
                    .violation(end, format!("lost grants: {lost_count}, first: {first}"));
            }
        }
        // Height ownership: within a height, some validator node asked for
        // every payload that was signed.
        let mut by_height: BTreeMap<(String, i64), Option<BTreeSet<String>>> = BTreeMap::new();
        for (chain, position, bytes) in &ledger.signed {
            let askers = ledger
                .requested
                .get(&(chain.clone(), *position, bytes.clone()))
                .cloned()
                .unwrap_or_default();
            let common = by_height
                .entry((chain.clone(), position.height))
                .or_insert_with(|| Some(askers.clone()));
            if let Some(set) = common {
                *set = set.intersection(&askers).cloned().collect();
            }
        }
        for ((chain, height), common) in &by_height {
            if common.as_ref().is_none_or(BTreeSet::is_empty) {
                self.trace.violation(
                    end,
                    format!(
                        "height ownership: {chain} height {height} advanced for two validator nodes"
                    ),
                );
            }
        }
        // Liveness: answers keep coming, and resume after the last heal.
        for (chain, times) in &ledger.answers {
            let mut previous = Duration::ZERO;
            for at in times {
                if at.saturating_sub(previous) > MAX_ANSWER_GAP {
                    self.trace.violation(
                        *at,
                        format!(
                            "stall: {chain} got no answer between {}ms and {}ms",
                            previous.as_millis(),
                            at.as_millis()
                        ),
                    );
                }
                previous = *at;
            }
            let last = times.last().copied().unwrap_or_default();
            if last > self.last_heal
                && let Some(first) = times.iter().find(|t| **t >= self.last_heal)
                && first.saturating_sub(self.last_heal) > RESUME_BOUND
            {
                self.trace.violation(
                    *first,
                    format!(
                        "stall: {chain} resumed {}ms after the last heal",
                        first.saturating_sub(self.last_heal).as_millis()
                    ),
                );
            }
        }
        let expected = self.settings.chains * self.settings.validators_per_chain;
        if ledger.finished.len() != expected {
            self.trace.violation(
                end,
                format!(
                    "stall: only {} of {expected} validator nodes finished",
                    ledger.finished.len()
                ),
            );
        }
    }
}
