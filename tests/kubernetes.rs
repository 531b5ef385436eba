//! `deploy/kubernetes/` is checked against the code, so the manifests cannot drift from it:
//! every variable they set is one confab reads, every probe is a route of the process it
//! probes, ports agree, grace periods cover the job deadline, the KEDA trigger watches the jobs
//! queue the contract names, and every secret key they use is documented.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every document of every manifest file, by file name.
fn manifests() -> BTreeMap<String, Vec<Value>> {
    let dir = root().join("deploy/kubernetes");
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(&dir).expect("deploy/kubernetes") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = fs::read_to_string(&path).expect("a manifest");
            let documents = serde_yaml_ng::Deserializer::from_str(&text)
                .map(|document| Value::deserialize(document).expect("valid YAML"))
                .collect();
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            files.insert(name, documents);
        }
    }
    files
}

fn objects() -> Vec<Value> {
    manifests()
        .into_iter()
        .filter(|(name, _)| name != "kustomization.yaml")
        .flat_map(|(_, documents)| documents)
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(objects, kind)
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn rust_sources(dir: &Path, out: &mut String) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

/// The one container of a Deployment, and its environment as set in the manifests (its own
/// `env` over the ConfigMap it takes).
fn container_and_env(objects: &[Value], deployment: &str) -> (Value, BTreeMap<String, String>) {
    let spec = &named(objects, "Deployment", deployment)["spec"]["template"]["spec"];
    let containers = spec["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1, "{deployment}: one container");
    let container = containers[0].clone();
    let mut env = BTreeMap::new();
    for from in container["envFrom"].as_sequence().into_iter().flatten() {
        let config = named(objects, "ConfigMap", text(&from["configMapRef"]["name"]));
        for (key, value) in config["data"].as_mapping().expect("data") {
            env.insert(text(key).to_owned(), text(value).to_owned());
        }
    }
    for var in container["env"].as_sequence().into_iter().flatten() {
        let value = var["value"].as_str().unwrap_or("<secret>").to_owned();
        env.insert(text(&var["name"]).to_owned(), value);
    }
    (container, env)
}

fn port_of(address: &str) -> u64 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address}"))
}

/// The container port a probe or service names (by name or number).
fn container_port(container: &Value, port: &Value) -> u64 {
    let ports = container["ports"].as_sequence().expect("ports");
    ports
        .iter()
        .find(|p| p["name"] == *port || p["containerPort"] == *port)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {port:?}"))
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let files = manifests();
    let listed: BTreeSet<String> = files["kustomization.yaml"][0]["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| text(r).to_owned())
        .collect();
    let present: BTreeSet<String> = files
        .keys()
        .filter(|name| *name != "kustomization.yaml")
        .cloned()
        .collect();
    assert_eq!(listed, present);
}

#[test]
fn every_variable_set_is_one_confab_reads() {
    let mut code = String::new();
    rust_sources(&root().join("src"), &mut code);
    rust_sources(&root().join("workers/src"), &mut code);
    let objects = objects();
    for deployment in ["confab-ingress", "confab-worker"] {
        let (_, env) = container_and_env(&objects, deployment);
        for var in env.keys() {
            let read = code.contains(&format!("\"{var}\""))
                || var == "RUST_LOG"
                || var.starts_with("OTEL_");
            assert!(read, "{deployment} sets {var}, which no code reads");
        }
    }
}

#[test]
fn probes_are_routes_and_ports_agree() {
    let objects = objects();
    let document = confab::app::openapi_document();
    let (ingress, env) = container_and_env(&objects, "confab-ingress");
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &ingress[probe]["httpGet"];
        let path = text(&get["path"]);
        assert!(
            document["paths"].get(path).is_some(),
            "the ingress's {probe} {path} is no route"
        );
        assert_eq!(
            container_port(&ingress, &get["port"]),
            port_of(&env["CONFAB_LISTEN"])
        );
    }
    assert_eq!(
        text(&ingress["readinessProbe"]["httpGet"]["path"]),
        "/readyz"
    );
    assert_eq!(
        text(&ingress["livenessProbe"]["httpGet"]["path"]),
        "/healthz"
    );

    let (worker, env) = container_and_env(&objects, "confab-worker");
    for (probe, wanted) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &worker[probe]["httpGet"];
        let path = text(&get["path"]);
        assert_eq!(path, wanted, "the worker's {probe}");
        assert_eq!(
            worker_answers(path),
            200,
            "the worker's {probe} {path} is no route of its metrics listener"
        );
        assert_eq!(
            container_port(&worker, &get["port"]),
            port_of(&env["CONFAB_WORKER_METRICS_LISTEN"])
        );
    }

    let service = named(&objects, "Service", "confab-ingress");
    assert_eq!(
        service["spec"]["selector"],
        named(&objects, "Deployment", "confab-ingress")["spec"]["template"]["metadata"]["labels"]
    );
    for port in service["spec"]["ports"].as_sequence().expect("ports") {
        assert_eq!(container_port(&ingress, &port["targetPort"]), 8080);
    }
}

/// The status the worker's metrics listener answers `GET path` with, for a worker that consumes.
fn worker_answers(path: &str) -> u16 {
    use tower::ServiceExt;
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let ready = confab_worker::readiness::Readiness::new(0);
    let request = axum::http::Request::get(path)
        .body(axum::body::Body::empty())
        .expect("request");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let answer = runtime
        .block_on(confab_worker::metrics::router(handle, ready).oneshot(request))
        .expect("answer");
    answer.status().as_u16()
}

#[test]
fn grace_periods_cover_the_job_deadline() {
    let objects = objects();
    for deployment in ["confab-ingress", "confab-worker"] {
        let (_, env) = container_and_env(&objects, deployment);
        let spec = &named(&objects, "Deployment", deployment)["spec"]["template"]["spec"];
        let grace = spec["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("a grace period");
        let deadline: u64 = env["CONFAB_JOB_DEADLINE_SECS"].parse().expect("a deadline");
        let drain: u64 = env["CONFAB_SHUTDOWN_GRACE_SECS"].parse().expect("a drain");
        assert!(
            drain >= deadline,
            "{deployment} drains for less than the deadline"
        );
        assert!(grace > drain, "{deployment} is killed before it drained");
    }
}

#[test]
fn workers_scale_on_the_jobs_queue_and_every_pod_is_budgeted() {
    let objects = objects();
    let (_, env) = container_and_env(&objects, "confab-worker");
    let names = confab_contract::Names::new(env["CONFAB_QUEUE_PREFIX"].clone());
    let scaled = named(&objects, "ScaledObject", "confab-worker");
    assert_eq!(
        text(&scaled["spec"]["scaleTargetRef"]["name"]),
        "confab-worker"
    );
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(text(&trigger["type"]), "rabbitmq");
    assert_eq!(text(&trigger["metadata"]["queueName"]), names.jobs());
    let hpa = named(&objects, "HorizontalPodAutoscaler", "confab-ingress");
    assert_eq!(
        text(&hpa["spec"]["scaleTargetRef"]["name"]),
        "confab-ingress"
    );

    for deployment in of_kind(&objects, "Deployment") {
        let name = text(&deployment["metadata"]["name"]);
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let budgeted = of_kind(&objects, "PodDisruptionBudget")
            .iter()
            .any(|pdb| pdb["spec"]["selector"]["matchLabels"] == *labels);
        assert!(budgeted, "{name} has no PodDisruptionBudget");
        let (container, _) = container_and_env(&objects, name);
        let requests = &container["resources"]["requests"];
        assert!(
            requests.get("cpu").is_some() && requests.get("memory").is_some(),
            "{name} requests no cpu or memory"
        );
    }
}

#[test]
fn every_secret_key_used_is_documented() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    let config = fs::read_to_string(root().join("deploy/kubernetes/config.yaml")).expect("config");
    let mut keys = BTreeSet::new();
    for object in objects() {
        collect_secret_keys(&object, &mut keys);
    }
    assert!(keys.len() >= 4, "{keys:?}");
    for key in keys {
        assert!(
            readme.contains(&format!("--from-literal={key}=")) && config.contains(&key),
            "the secret key {key} is not in README's Kubernetes section and config.yaml"
        );
    }
}

fn collect_secret_keys(value: &Value, keys: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) => {
            for (name, inner) in map {
                if name == "secretKeyRef" || name == "secretTargetRef" {
                    let refs: Vec<&Value> = match inner {
                        Value::Sequence(list) => list.iter().collect(),
                        other => vec![other],
                    };
                    for r in refs {
                        keys.insert(text(&r["key"]).to_owned());
                    }
                }
                collect_secret_keys(inner, keys);
            }
        }
        Value::Sequence(list) => list.iter().for_each(|v| collect_secret_keys(v, keys)),
        _ => {}
    }
}
