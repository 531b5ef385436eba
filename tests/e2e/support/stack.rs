//! A whole confab stack per test: a fresh database with the migrations applied, a fresh queue
//! prefix, the real ingress on port 0, and real workers (tasks in this process, or child
//! processes that a test can kill). Everything it made is removed when it is dropped.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use confab::config::{ConnectionLimits, HeavyWrites, KnowledgeLimits};
use confab::{Application, IngressConfig, ReplyMode};
use confab_contract::settings::SharedSettings;
use confab_contract::{Names, QueueLimits};
use confab_shared::db::PoolSettings;
use confab_shared::platforms::Endpoints;
use confab_shared::secrets::SecretBox;
use confab_worker::WorkerConfig;
use confab_worker::config::{DeliveryConfig, Roles, ToolLimits};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where the services are; the defaults are the development machine's.
pub fn admin_database_url() -> String {
    std::env::var("CONFAB_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn amqp_url() -> String {
    std::env::var("CONFAB_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// `prefix` and 12 random hex digits: a name of one test's own (queue prefix, database).
pub fn random_name(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn database_url(admin_url: &str, database: &str) -> String {
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(admin_url);
    format!("{base}/{database}")
}

async fn admin_client() -> tokio_postgres::Client {
    confab::cli::admin::connect(&admin_database_url())
        .await
        .expect("the test database server must be reachable")
}

/// Options of a test stack.
#[derive(Clone)]
pub struct Options {
    pub reply_mode: ReplyMode,
    /// Worker tasks started in this process.
    pub workers: usize,
    pub deadline: Duration,
    pub queue_limits: QueueLimits,
    /// The built-in model's latency before its first token.
    pub builtin_latency: Duration,
    pub builtin_token_delay: Duration,
    pub openai_base_url: String,
    pub openai_api_key: String,
    pub model_timeout: Duration,
    pub amqp_url: String,
    pub rate_limit_per_min: i32,
    pub default_context_window: u32,
    /// The database server's admin URL (its `postgres` or `test` database).
    pub admin_database_url: String,
    /// Channel messages older than this are stored, not answered.
    pub webhook_max_age: Duration,
    /// Where workers in the delivery role send channel answers (a test's fake platform).
    pub channel_endpoints: Endpoints,
    /// First pause between send retries of the delivery role.
    pub delivery_retry_base: Duration,
    /// `CONFAB_SECRET_KEYS` of every process: a fresh key per test unless a test picks its own.
    pub secret_keys: String,
    /// How long a stream's turn outlives its client; zero (stop at once) unless a test of
    /// resuming sets it.
    pub resume_grace: Duration,
    /// What the visitors of public web channels may do.
    pub visitors: confab::config::VisitorLimits,
    /// The ingress's connection deadlines and cap.
    pub connection_limits: ConnectionLimits,
    pub body_read_timeout: Duration,
    pub stream_stall: Duration,
    /// Each process's pool: its size, the wait for a connection, the statement timeout.
    pub database: PoolSettings,
    /// The ingress's share of the pool for document uploads.
    pub heavy_writes: HeavyWrites,
    /// What one document and one folder may hold.
    pub knowledge: KnowledgeLimits,
    /// How far an assistant's tool loop goes in one turn.
    pub tools: ToolLimits,
    /// More variables for the stack's processes (`process_command`), set after its own: how a
    /// test configures what only the environment configures (OpenTelemetry, say).
    pub process_env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            reply_mode: ReplyMode::PerRequest,
            workers: 1,
            deadline: Duration::from_secs(30),
            queue_limits: QueueLimits::default(),
            builtin_latency: Duration::ZERO,
            builtin_token_delay: Duration::ZERO,
            openai_base_url: "http://127.0.0.1:9/v1".into(),
            openai_api_key: String::new(),
            model_timeout: Duration::from_secs(10),
            amqp_url: amqp_url(),
            rate_limit_per_min: 1_000_000,
            default_context_window: 8_192,
            admin_database_url: admin_database_url(),
            webhook_max_age: Duration::from_secs(900),
            channel_endpoints: Endpoints {
                whatsapp_graph_url: "http://127.0.0.1:9".into(),
                whatsapp_graph_version: "v21.0".into(),
                telegram_api_url: "http://127.0.0.1:9".into(),
            },
            delivery_retry_base: Duration::from_millis(20),
            secret_keys: SecretBox::generate_key("test"),
            resume_grace: Duration::ZERO,
            visitors: confab::config::VisitorLimits::default(),
            connection_limits: ConnectionLimits {
                header_read_timeout: Duration::from_secs(10),
                write_stall: Duration::from_secs(60),
                max_connections: 4096,
            },
            body_read_timeout: Duration::from_secs(30),
            stream_stall: Duration::from_secs(30),
            database: PoolSettings {
                size: 4,
                wait: Duration::from_secs(10),
                statement_timeout: Duration::from_secs(30),
            },
            heavy_writes: HeavyWrites {
                permits: 1,
                wait: Duration::from_secs(10),
            },
            knowledge: KnowledgeLimits::DEFAULT,
            tools: ToolLimits {
                max_steps: 5,
                result_max_bytes: 16_384,
            },
            process_env: Vec::new(),
        }
    }
}

impl Options {
    pub fn mode(reply_mode: ReplyMode) -> Self {
        Self {
            reply_mode,
            ..Self::default()
        }
    }
}

pub struct Stack {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub api_key: String,
    /// The tenant `api_key` belongs to.
    pub tenant_id: uuid::Uuid,
    pub database: String,
    pub database_url: String,
    pub names: Names,
    pub options: Options,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    children: Vec<tokio::process::Child>,
}

/// The in-process ingresses' and workers' warnings go to stderr, which nextest captures and
/// shows when a test fails: a failure in CI then says what the server saw. (The benchmark,
/// which shares this file, keeps its tables on stdout.)
fn capture_server_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
}

impl Stack {
    pub async fn start(options: Options) -> Stack {
        capture_server_warnings();
        let database = random_name("confab_t_");
        let database_url = database_url(&options.admin_database_url, &database);
        confab::cli::admin::connect(&options.admin_database_url)
            .await
            .expect("the test database server must be reachable")
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .expect("create the test database");
        let mut client = confab::cli::admin::connect(&database_url)
            .await
            .expect("connect");
        confab::store::migrate::run(&mut client)
            .await
            .expect("migrate");
        let tenant = confab::cli::admin::create_tenant(&mut client, "test tenant")
            .await
            .expect("create tenant");
        let names = Names::new(random_name("t"));
        let mut stack = Stack {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: reqwest::Client::new(),
            api_key: tenant["api_key"].as_str().expect("api_key").to_owned(),
            tenant_id: serde_json::from_value(tenant["tenant_id"].clone()).expect("tenant_id"),
            database,
            database_url,
            names,
            options,
            stops: Vec::new(),
            tasks: Vec::new(),
            children: Vec::new(),
        };
        for _ in 0..stack.options.workers {
            stack.start_worker_task();
        }
        stack.start_ingress().await;
        stack
    }

    /// The stack's `CONFAB_SECRET_KEYS`, as every process of it reads them.
    pub fn secrets(&self) -> SecretBox {
        SecretBox::parse(&self.options.secret_keys).expect("the test's secret keys")
    }

    fn shared(&self) -> SharedSettings {
        SharedSettings {
            database_url: self.database_url.clone(),
            amqp_url: self.options.amqp_url.clone(),
            names: self.names.clone(),
            queue_limits: self.options.queue_limits,
            resume_grace: self.options.resume_grace,
        }
    }

    pub fn ingress_config(&self) -> IngressConfig {
        IngressConfig {
            shared: self.shared(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            reply_mode: self.options.reply_mode,
            job_deadline: self.options.deadline,
            max_body_bytes: 64 * 1024,
            rate_limit_per_min: self.options.rate_limit_per_min,
            database: self.options.database,
            heavy_writes: self.options.heavy_writes,
            knowledge: self.options.knowledge,
            shutdown_grace: Duration::from_secs(2),
            connection_limits: self.options.connection_limits,
            body_read_timeout: self.options.body_read_timeout,
            stream_stall: self.options.stream_stall,
            webhook_max_age: self.options.webhook_max_age,
            secrets: self.secrets(),
            visitors: self.options.visitors,
        }
    }

    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            shared: self.shared(),
            concurrency: 4,
            openai_base_url: self.options.openai_base_url.clone(),
            openai_api_key: self.options.openai_api_key.clone(),
            model_timeout: self.options.model_timeout,
            coalesce: Duration::from_millis(5),
            builtin_latency: self.options.builtin_latency,
            builtin_token_delay: self.options.builtin_token_delay,
            default_context_window: self.options.default_context_window,
            database: self.options.database,
            shutdown_grace: Duration::from_secs(2),
            roles: Roles {
                chat: true,
                delivery: true,
            },
            delivery: DeliveryConfig {
                endpoints: self.options.channel_endpoints.clone(),
                concurrency: 4,
                max_attempts: 5,
                retry_base: self.options.delivery_retry_base,
                http_timeout: Duration::from_secs(5),
                secrets: self.secrets(),
            },
            metrics_listen: None,
            tools: self.options.tools,
        }
    }

    async fn start_ingress(&mut self) {
        self.addr = self.spawn_ingress().await;
    }

    /// One more ingress of this stack as a task of this process, on a port of its own (the
    /// same database and queue prefix, as another replica of a deployment); returns its base
    /// URL. It stops with the stack.
    pub async fn another_ingress(&mut self) -> String {
        format!("http://{}", self.spawn_ingress().await)
    }

    async fn spawn_ingress(&mut self) -> SocketAddr {
        let app = Application::build(&self.ingress_config())
            .await
            .expect("build the ingress");
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel();
        self.stops.push(stop);
        self.tasks.push(tokio::spawn(async move {
            let _ = app
                .run_until_stopped(async {
                    let _ = stopped.await;
                })
                .await;
        }));
        addr
    }

    /// Start one more worker as a task of this process.
    pub fn start_worker_task(&mut self) {
        self.start_worker_task_with_concurrency(4);
    }

    /// Start one more worker task taking at most `concurrency` jobs at once.
    pub fn start_worker_task_with_concurrency(&mut self, concurrency: u16) {
        let mut config = self.worker_config();
        config.concurrency = concurrency;
        let (stop, stopped) = oneshot::channel();
        self.stops.push(stop);
        self.tasks.push(tokio::spawn(async move {
            let _ = confab_worker::run(config, async {
                let _ = stopped.await;
            })
            .await;
        }));
    }

    /// Start one more worker as a child process (`confab worker`), which a test may kill.
    pub fn start_worker_process(&mut self) -> u32 {
        let child = self.worker_process_with(|_| {});
        let pid = child.id().expect("pid");
        self.children.push(child);
        pid
    }

    /// A worker process like [`Stack::start_worker_process`]'s, its command changed by
    /// `configure` first; the caller keeps it (or gives it to [`Stack::adopt_child`]).
    pub fn worker_process_with(
        &self,
        configure: impl FnOnce(&mut tokio::process::Command),
    ) -> tokio::process::Child {
        let mut command = self.process_command("worker");
        command.args(["--concurrency", "4"]);
        configure(&mut command);
        command.spawn().expect("spawn a worker process")
    }

    /// `confab <command>` configured for this stack through its environment, as a deployment
    /// configures it.
    pub fn process_command(&self, command: &str) -> tokio::process::Command {
        let config = self.worker_config();
        let limits = config.shared.queue_limits;
        let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"));
        process
            .arg(command)
            .env("CONFAB_DATABASE_URL", &config.shared.database_url)
            .env("CONFAB_AMQP_URL", &config.shared.amqp_url)
            .env("CONFAB_QUEUE_PREFIX", self.names.prefix())
            .env(
                "CONFAB_WORK_QUEUE_MAX_LENGTH",
                limits.max_length.to_string(),
            )
            .env(
                "CONFAB_JOB_DELIVERY_LIMIT",
                limits.delivery_limit.to_string(),
            )
            .env(
                "CONFAB_BUILTIN_LATENCY_MS",
                config.builtin_latency.as_millis().to_string(),
            )
            .env(
                "CONFAB_BUILTIN_TOKEN_DELAY_MS",
                config.builtin_token_delay.as_millis().to_string(),
            )
            .env(
                "CONFAB_RATE_LIMIT_PER_MIN",
                self.options.rate_limit_per_min.to_string(),
            )
            .env(
                "CONFAB_WHATSAPP_GRAPH_URL",
                &self.options.channel_endpoints.whatsapp_graph_url,
            )
            .env(
                "CONFAB_TELEGRAM_API_URL",
                &self.options.channel_endpoints.telegram_api_url,
            )
            .env(
                "CONFAB_DELIVERY_RETRY_BASE_MS",
                self.options.delivery_retry_base.as_millis().to_string(),
            )
            .env(
                "CONFAB_WEBHOOK_MAX_AGE_SECS",
                self.options.webhook_max_age.as_secs().to_string(),
            )
            .env("CONFAB_SECRET_KEYS", &self.options.secret_keys)
            .env(
                "CONFAB_RESUME_GRACE_SECS",
                self.options.resume_grace.as_secs().to_string(),
            )
            .env("CONFAB_OPENAI_BASE_URL", &self.options.openai_base_url)
            .env("CONFAB_OPENAI_API_KEY", &self.options.openai_api_key)
            .env(
                "CONFAB_TOOL_MAX_STEPS",
                self.options.tools.max_steps.to_string(),
            )
            .env(
                "CONFAB_TOOL_RESULT_MAX_BYTES",
                self.options.tools.result_max_bytes.to_string(),
            )
            .env(
                "CONFAB_RESUME_RETENTION_SECS",
                limits.resume_retention_secs.to_string(),
            )
            .env(
                "CONFAB_DATABASE_POOL_WAIT_MS",
                self.options.database.wait.as_millis().to_string(),
            )
            .env(
                "CONFAB_STATEMENT_TIMEOUT_MS",
                self.options
                    .database
                    .statement_timeout
                    .as_millis()
                    .to_string(),
            )
            .env("RUST_LOG", "warn")
            .envs(self.options.process_env.iter().cloned())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        process
    }

    /// Another ingress of this stack, as a process of its own on a free port, once it is ready;
    /// returns the process and its base URL.
    pub async fn ingress_process(&self) -> (tokio::process::Child, String) {
        self.ingress_process_with(|_| {}).await
    }

    /// [`Stack::ingress_process`], its command changed by `configure` first (its stderr
    /// captured, say).
    pub async fn ingress_process_with(
        &self,
        configure: impl FnOnce(&mut tokio::process::Command),
    ) -> (tokio::process::Child, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let mut command = self.process_command("ingress");
        command.env("CONFAB_LISTEN", format!("127.0.0.1:{port}"));
        configure(&mut command);
        let child = command.spawn().expect("spawn an ingress process");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            let ready = self.http.get(format!("{url}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return (child, url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the ingress process did not become ready");
    }

    /// Keep a child process of the test's making with the stack, so it dies with it.
    pub fn adopt_child(&mut self, child: tokio::process::Child) {
        self.children.push(child);
    }

    /// SIGKILL a worker process: no goodbye to the broker, no finished turn.
    pub async fn kill_worker_process(&mut self, pid: u32) {
        let index = self
            .children
            .iter()
            .position(|c| c.id() == Some(pid))
            .expect("a child with that pid");
        let mut child = self.children.remove(index);
        child.kill().await.expect("kill the worker");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        confab::cli::admin::connect(&self.database_url)
            .await
            .expect("connect")
    }

    /// A job for the stack's tenant and `agent` (as `create_assistant` returned it), asking
    /// `text` in conversation `conversation_id`, its events to `reply_to`: what a test publishes
    /// past the ingress. A minute to its deadline; the rest as the ingress leaves it by default.
    pub async fn job(
        &self,
        agent: &Value,
        conversation_id: &str,
        text: &str,
        reply_to: &str,
    ) -> confab_contract::Job {
        use confab_contract::{AssistantRef, Job, Message, Role, VERSION, now_ms};
        let tenant_id: uuid::Uuid = self
            .db()
            .await
            .query_one("SELECT tenant_id FROM api_keys LIMIT 1", &[])
            .await
            .expect("the stack's key")
            .get(0);
        Job {
            v: VERSION,
            request_id: uuid::Uuid::now_v7(),
            tenant_id,
            assistant: AssistantRef::Stored {
                id: agent["id"]
                    .as_str()
                    .expect("an id")
                    .parse()
                    .expect("a uuid"),
            },
            conversation_id: conversation_id.into(),
            identity_id: None,
            channel_id: None,
            message: Message::text("m1".into(), Role::User, text.into(), now_ms()),
            history: Vec::new(),
            metadata: Default::default(),
            folder_ids: Vec::new(),
            stream: false,
            ephemeral: false,
            sampling: Default::default(),
            tools: Default::default(),
            deadline_ms: now_ms() + 60_000,
            published_ms: now_ms(),
            reply_to: reply_to.into(),
            last_delta_in_done: false,
            stream_format: None,
        }
    }

    /// A connection of a pool like the processes' own, for the store functions that take one
    /// (their statements are cached per pooled connection).
    pub async fn pooled_db(&self) -> deadpool_postgres::Object {
        let pool = confab_shared::db::pool(&self.database_url, self.options.database)
            .expect("a pool of the test database");
        pool.get().await.expect("a pooled connection")
    }

    /// Create an assistant through the management API; returns its JSON.
    pub async fn create_assistant(&self, body: Value) -> Value {
        let response = self
            .http
            .post(self.url("/v1/assistants"))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .expect("POST /v1/assistants");
        assert_eq!(response.status(), 201, "creating an assistant");
        response.json().await.expect("assistant JSON")
    }

    /// The demo-like assistant most tests talk to.
    pub async fn support_agent(&self) -> Value {
        self.create_assistant(json!({
            "name": "Support Agent",
            "instructions": "You are a helpful support agent. Our business hours are 9:00 to 17:00, Monday to Friday. Refunds are processed within five business days.",
        }))
        .await
    }

    /// `POST /v1/api/chat/{slug}` with a JSON body.
    pub async fn chat(&self, slug: &str, body: Value) -> reqwest::Response {
        self.chat_at(&self.url(""), slug, body).await
    }

    /// [`Stack::chat`] on the ingress at `base` (another process or replica of this stack).
    pub async fn chat_at(&self, base: &str, slug: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{base}/v1/api/chat/{slug}"))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .expect("POST chat")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in &self.tasks {
            task.abort();
        }
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        let database = self.database.clone();
        let names = self.names.clone();
        let amqp = self.options.amqp_url.clone();
        let admin_url = self.options.admin_database_url.clone();
        // Drop runs inside the test's runtime, which cannot block on async work: clean up from a
        // thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                remove_broker_objects(&amqp, &names).await;
                if let Ok(admin) = confab::cli::admin::connect(&admin_url).await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Delete every durable queue and exchange of a prefix (exclusive ones die with their owners).
pub async fn remove_broker_objects(amqp: &str, names: &Names) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(nodes) = confab_contract::BrokerNodes::parse(amqp) else {
        return;
    };
    let Ok((connection, _)) = nodes.connect(Default::default()).await else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        // The reply log too: every stream holds files open on the broker until it is deleted.
        for queue in [
            names.jobs(),
            names.deliveries(),
            names.dead_letters(),
            names.reply_log(),
        ] {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for exchange in [names.dead_letter_exchange(), names.cancel_exchange()] {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "test cleanup".into()).await;
}

/// The request id a response names (`X-Request-Id`).
pub fn request_id_of(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .expect("a visible request id")
        .to_owned()
}

/// The `data:` payloads of a complete SSE body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data).to_owned())
        .collect()
}

/// Drop a test database out from under whoever uses it.
pub async fn drop_database(database: &str) {
    admin_client()
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .expect("drop the database");
}

impl Stack {
    /// Call the API with this stack's key; returns the status and the JSON body (`null` if none).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(&self.api_key, method, path, body).await
    }

    /// Call the API with another key.
    pub async fn api_as(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    /// A second tenant in the same deployment; returns its API key.
    pub async fn other_tenant(&self) -> String {
        let mut db = self.db().await;
        let other = confab::cli::admin::create_tenant(&mut db, "other tenant")
            .await
            .expect("create tenant");
        other["api_key"].as_str().expect("api_key").to_owned()
    }
}
