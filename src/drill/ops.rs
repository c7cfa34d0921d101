//! What a drill does to the cluster: admin calls to every node and the
//! plan's shell hooks.

use std::time::Duration;

use crate::cluster::admin::{Client, ClientError, Status};

use super::plan::{self, Plan};

/// The plan's nodes, as the drill reaches them.
pub struct Nodes {
    nodes: Vec<plan::NodePlan>,
    clients: Vec<Client>,
    ids: Vec<u64>,
    hook_timeout: Duration,
}

/// What the drill can read of one node.
pub struct NodeView {
    /// Its name in the plan.
    pub name: String,
    /// Its status, or why it did not answer.
    pub status: Result<Status, ClientError>,
}

impl Nodes {
    /// Connects to every node of `plan` and learns their Raft ids.
    ///
    /// # Errors
    ///
    /// TLS files that cannot be used, or a node that does not answer.
    pub async fn connect(plan: &Plan) -> Result<Nodes, String> {
        let timeout = Duration::from_secs(3);
        let clients = plan
            .nodes
            .iter()
            .map(|n| {
                let client = Client::new(n.admin.clone(), timeout);
                match &plan.tls {
                    Some(tls) => client.with_tls(tls).map_err(|e| e.to_string()),
                    None => Ok(client),
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut nodes = Nodes {
            nodes: plan.nodes.clone(),
            clients,
            ids: Vec::new(),
            hook_timeout: plan.timing.hook_timeout,
        };
        for view in nodes.views().await {
            let status = view.status.map_err(|e| {
                format!(
                    "the cluster is not healthy: {} does not answer: {e}",
                    view.name
                )
            })?;
            nodes.ids.push(status.node_id);
        }
        Ok(nodes)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the plan has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Node `i` in the plan.
    pub fn plan(&self, i: usize) -> &plan::NodePlan {
        &self.nodes[i]
    }

    /// The plan index of Raft node `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.ids.iter().position(|n| *n == id)
    }

    /// Every node's status, asked concurrently.
    pub async fn views(&self) -> Vec<NodeView> {
        let asks = self.clients.iter().map(Client::status);
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .zip(&self.nodes)
            .map(|(status, node)| NodeView {
                name: node.name.clone(),
                status,
            })
            .collect()
    }

    /// The leader's plan index when the cluster is healthy: every node
    /// answers, follows the same leader with quorum, and has neither a
    /// storage fault nor a simulated key loss. Otherwise what is wrong.
    ///
    /// # Errors
    ///
    /// The first problem found, in words.
    pub async fn healthy(&self) -> Result<usize, String> {
        let mut leader = None;
        for view in self.views().await {
            let status = view
                .status
                .map_err(|e| format!("{} does not answer ({e})", view.name))?;
            if let Some(fault) = &status.storage_fault {
                return Err(format!("{} has a storage fault: {fault}", view.name));
            }
            if status.key_loss_simulated {
                return Err(format!("{} still simulates a key loss", view.name));
            }
            if !status.has_quorum_leader {
                return Err(format!("{} has no leader with quorum", view.name));
            }
            match (leader, status.leader) {
                (_, None) => return Err(format!("{} knows no leader", view.name)),
                (None, Some(l)) => leader = Some(l),
                (Some(a), Some(b)) if a != b => {
                    return Err(format!("nodes disagree on the leader ({a} and {b})"));
                }
                _ => {}
            }
        }
        let leader = leader.ok_or("no node answered")?;
        self.index_of(leader)
            .ok_or_else(|| format!("the leader, node id {leader}, is not in the plan"))
    }

    /// Runs one of node `i`'s hook commands with `sh -c`.
    ///
    /// # Errors
    ///
    /// The command fails, cannot start, or runs past the hook timeout.
    pub async fn hook(&self, i: usize, what: &str, command: &str) -> Result<(), String> {
        let node = &self.nodes[i];
        println!("  $ {command}    ({what} {})", node.name);
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("QK_NODE", &node.name)
            .env("QK_NODE_ID", self.ids[i].to_string())
            .env("QK_ADMIN", &node.admin)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{what} {}: cannot run `{command}`: {e}", node.name))?;
        match tokio::time::timeout(self.hook_timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("{what} {}: `{command}` {status}", node.name)),
            Ok(Err(e)) => Err(format!("{what} {}: `{command}`: {e}", node.name)),
            Err(_) => Err(format!(
                "{what} {}: `{command}` still running after {:?}",
                node.name, self.hook_timeout
            )),
        }
    }

    /// Makes node `i`'s keys fail (`lost`) or work again: with the plan's
    /// `key_loss`/`key_restore` commands, else through the admin API.
    ///
    /// # Errors
    ///
    /// The command or the admin call failed.
    pub async fn set_key_loss(&self, i: usize, lost: bool) -> Result<(), String> {
        let node = &self.nodes[i];
        let command = if lost {
            &node.key_loss
        } else {
            &node.key_restore
        };
        match command {
            Some(command) => {
                let what = if lost { "key loss" } else { "key restore" };
                self.hook(i, what, command).await
            }
            None => {
                let message = self.clients[i]
                    .simulate_key_loss(lost)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("  {}: {message}", node.name);
                Ok(())
            }
        }
    }
}
