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
