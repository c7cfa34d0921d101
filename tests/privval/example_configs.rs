//! The example configurations shipped in cluster/examples parse and
//! validate, so operators start from files that work, and run mutual TLS
//! on the cluster port.

use std::path::Path;

#[test]
fn every_example_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/examples");
    let mut checked = 0;
    for dir in std::fs::read_dir(&root).expect("cluster/examples") {
        let dir = dir.expect("entry").path();
        for file in std::fs::read_dir(&dir).expect("example dir") {
            let path = file.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).expect("read");
                let config = quorumkms::config::parse(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if let Err(problems) = config.validate() {
                    panic!("{}: {problems:?}", path.display());
                }
                let cluster = config
                    .cluster
                    .unwrap_or_else(|| panic!("{} has no [cluster]", path.display()));
                assert!(
                    cluster.tls.is_some() && !cluster.insecure_plaintext,
                    "{} runs the cluster port without TLS",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 8, "three LAN nodes and five regional nodes");
}

/// The per-pod configs in the Kubernetes ConfigMap (literal blocks under
/// `  quorumkms-N.toml: |`) parse and validate too.
#[test]
fn every_kubernetes_config_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/kubernetes/configmap.yaml");
    let yaml = std::fs::read_to_string(&path).expect("configmap.yaml");
    let mut configs: Vec<(String, String)> = Vec::new();
    for line in yaml.lines() {
        if let Some(name) = line
            .strip_prefix("  ")
            .and_then(|l| l.strip_suffix(".toml: |"))
        {
            configs.push((name.to_string(), String::new()));
        } else if let Some((_, text)) = configs.last_mut() {
            match line.strip_prefix("    ") {
                Some(body) => text.push_str(body),
                None if line.trim().is_empty() => {}
                None => continue,
            }
            text.push('\n');
        }
    }
    assert_eq!(configs.len(), 3, "one config per pod");
    for (i, (name, text)) in configs.iter().enumerate() {
        assert_eq!(name, &format!("quorumkms-{i}"));
        let config =
            quorumkms::config::parse(text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        if let Err(problems) = config.validate() {
            panic!("{name}: {problems:?}");
        }
        let cluster = config.cluster.expect("[cluster]");
        assert_eq!(cluster.node_id, i as u64 + 1, "{name}");
        assert!(cluster.tls.is_some(), "{name} runs without TLS");
        assert!(
            config.metrics.is_some(),
            "{name}: readiness needs [metrics]"
        );
    }
}
