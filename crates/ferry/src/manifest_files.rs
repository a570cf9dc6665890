//! `ferry manifest files`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;
use ferry_store::Store;

#[derive(ClapArgs)]
pub(crate) struct Args {
    /// The staging store to list: a local folder, s3://, gs:// or az:// URL (as a filestores
    /// `base`). Names in the manifest are relative to it.
    #[arg(long, value_name = "STORE_URL")]
    from: String,

    /// List only the files under this path prefix, taken as whole segments (`1.30.0` holds
    /// `1.30.0/kops`, not `1.30.0-rc.1/kops`). Names stay relative to --from.
    #[arg(long, value_name = "P", default_value = "")]
    prefix: String,

    /// Files read and hashed at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    concurrency: usize,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let store = Store::open(&args.from)?;
    match ferry_files::listing::list_files(&store, &args.prefix, args.concurrency).await {
        Ok(files) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(ferry_files::listing::render(&files).as_bytes())?;
            stdout.flush()?;
            eprintln!("{} files, {} bytes read", files.len(), files.iter().map(|f| f.size).sum::<u64>());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(if e.is_bad_input() { 2 } else { 1 }))
        }
    }
}
