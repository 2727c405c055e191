//! `tarn configure`: checks a server and token and saves them as a profile, as
//! `databricks configure` does, so client commands need no flags.

use anyhow::{Context, Result};
use clap::Args;

use crate::client::{Client, Connection, tarnrc_path, write_profile};

#[derive(Args)]
pub struct ConfigureArgs {
    /// The server, `http://HOST:PORT` (or a workspace's URL, `http://HOST:PORT/ws/prod`).
    #[arg(long, env = "TARN_HOST")]
    host: String,
    /// The token; read from standard input when not given.
    #[arg(long, env = "TARN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The workspace commands work in by default.
    #[arg(long)]
    workspace: Option<String>,
    /// The profile to write.
    #[arg(long, env = "TARN_PROFILE", default_value = "DEFAULT")]
    profile: String,
}

pub async fn run(args: ConfigureArgs) -> Result<()> {
    let token = match args.token {
        Some(token) => token,
        None => {
            eprintln!("token for {}:", args.host);
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the token from standard input")?;
            line.trim().to_string()
        }
    };
    let client: Client = Connection {
        host: Some(args.host.clone()),
        token: Some(token.clone()),
        workspace: args.workspace.clone(),
        profile: None,
    }
    .connect()?;
    // Checked before saving, so a profile never holds a server or token that does not work.
    let me = client.get("/api/2.0/tarn/me", &[]).await?;
    let file = tarnrc_path()?;
    let mut entries = vec![("host", args.host.as_str()), ("token", token.as_str())];
    if let Some(workspace) = &args.workspace {
        entries.push(("workspace", workspace));
    }
    write_profile(&file, &args.profile, &entries)?;
    println!(
        "profile [{}] in {}: {} as {} in {}",
        args.profile,
        file.display(),
        client.root(),
        me["name"].as_str().unwrap_or("?"),
        client.workspace()
    );
    Ok(())
}
