//! `hangar image build`: builds an image on this machine with a progress bar.
//!
//! The built-in recipes (`images/default/` in the repository) are compiled into the binary and
//! written under `DATA/recipes/` before a build, so the binary alone can build them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hangar_runtime::image::{BuildProgress, ImageStore, Recipe};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::DataOpts;
use crate::config::{default_data_dir, FileConfig};

/// The built-in recipes: (name, [(file name, contents)]). `browser` builds on `default`,
/// which must be in the same store first.
const BUILTIN: &[(&str, &[(&str, &str)])] = &[
    (
        "browser",
        &[
            (
                "recipe.toml",
                include_str!("../../../images/browser/recipe.toml"),
            ),
            (
                "install-packages.sh",
                include_str!("../../../images/browser/install-packages.sh"),
            ),
            (
                "install-files.sh",
                include_str!("../../../images/browser/install-files.sh"),
            ),
            (
                "hangar-browser-session",
                include_str!("../../../images/browser/hangar-browser-session"),
            ),
            (
                "hangar-browser",
                include_str!("../../../images/browser/hangar-browser"),
            ),
            ("xdg-open", include_str!("../../../images/browser/xdg-open")),
            (
                "hangar-browser.desktop",
                include_str!("../../../images/browser/hangar-browser.desktop"),
            ),
            (
                "mimeapps.list",
                include_str!("../../../images/browser/mimeapps.list"),
            ),
        ],
    ),
    (
        "default",
        &[
            (
                "recipe.toml",
                include_str!("../../../images/default/recipe.toml"),
            ),
            (
                "package.json",
                include_str!("../../../images/default/package.json"),
            ),
            (
                "package-lock.json",
                include_str!("../../../images/default/package-lock.json"),
            ),
        ],
    ),
];

/// Draws build progress: one bar over the steps, the current step's last output line. When
/// stderr is not a terminal (CI logs), prints one plain line per step instead.
struct Bar(ProgressBar);

impl BuildProgress for Bar {
    fn step_started(&self, index: usize, total: usize, name: &str, cached: bool) {
        if self.0.is_hidden() {
            let note = if cached { " (cached)" } else { "" };
            eprintln!("step {}/{total}: {name}{note}", index + 1);
        }
        self.0.set_length(total as u64);
        self.0.set_position(index as u64);
        let note = if cached { " (cached)" } else { "" };
        self.0.set_prefix(format!("{name}{note}"));
        self.0.set_message("");
    }

    fn step_message(&self, line: &str) {
        let line: String = line.chars().take(70).collect();
        self.0.set_message(line);
    }

    fn step_finished(&self, index: usize, elapsed: Duration) {
        if self.0.is_hidden() {
            eprintln!("  done in {:.1} s", elapsed.as_secs_f64());
        }
        self.0.set_position(index as u64 + 1);
        self.0.println(format!(
            "  done: {} in {:.1} s",
            self.0.prefix(),
            elapsed.as_secs_f64()
        ));
    }
}

fn recipe_dir(data_dir: &Path, recipe: &str) -> anyhow::Result<PathBuf> {
    if let Some((name, files)) = BUILTIN.iter().find(|(n, _)| *n == recipe) {
        let dir = data_dir.join("recipes").join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (file, text) in *files {
            let path = dir.join(file);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(*text) {
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        return Ok(dir);
    }
    let dir = PathBuf::from(recipe);
    anyhow::ensure!(
        dir.join("recipe.toml").is_file(),
        "no built-in recipe {recipe:?} and no recipe.toml in {recipe}"
    );
    Ok(dir)
}

/// Builds `recipe` into the data directory's image store.
pub async fn build(data: DataOpts, recipe: &str) -> anyhow::Result<()> {
    let file = FileConfig::load(data.config.as_deref())?;
    let data_dir = data
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(default_data_dir);
    let store = ImageStore::open(file.images_dir.unwrap_or_else(|| data_dir.join("images")))?;
    let dir = recipe_dir(&data_dir, recipe)?;
    let recipe = Recipe::load(&dir)?;
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template(
            "[{elapsed_precise}] {bar:30} {pos}/{len} {prefix}: {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = Bar(bar);
    let image = store.build(&recipe, &progress).await?;
    progress.0.finish_and_clear();
    println!(
        "built image {} {} ({} MiB)",
        image.name,
        image.digest,
        image.size_bytes / (1024 * 1024)
    );
    for (k, v) in &image.config.labels {
        println!("  {k}: {v}");
    }
    Ok(())
}
