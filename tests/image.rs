//! `--image`: a small two-layer image built here (busybox-static as its
//! shell, a whiteout and an opaque directory in the upper layer), as an OCI
//! layout and as a `docker save` tarball, run in a container and a VM; and
//! images that must be refused (a blob that does not match its digest, a
//! layer entry escaping the layer, too large for the guest's RAM).

mod common;

use common::{Scratch, is_root, require, text, vm_ready};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

const BUSYBOX: &str = "/bin/busybox";

fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn hex(d: &str) -> &str {
    d.trim_start_matches("sha256:")
}

/// A tar entry of a layer.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, Vec<u8>, u32),
    Link(&'a str, &'a str),
    /// A raw name the tar crate's builder would refuse (`../x`).
    Raw(&'a str),
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            E::Link(p, to) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, to).unwrap();
            }
            E::Raw(name) => {
                let mut h = tar::Header::new_old();
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h.set_size(1);
                h.set_cksum();
                b.get_mut().extend_from_slice(h.as_bytes());
                b.get_mut().extend_from_slice(&[b'x'; 512]);
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The two layers of the test image, uncompressed: busybox with `sh`, and
/// above it a whiteout of `/etc/gone`, `/opq` made opaque, new files.
fn busybox_layers() -> Vec<Vec<u8>> {
    let busybox = std::fs::read(BUSYBOX).unwrap();
    let lower = layer(&[
        E::Dir("bin/"),
        E::File("bin/busybox", busybox, 0o755),
        E::Link("bin/sh", "busybox"),
        E::Dir("etc/"),
        E::File("etc/gone", b"lower\n".to_vec(), 0o644),
        E::File("etc/kept", b"lower\n".to_vec(), 0o644),
        E::Dir("opq/"),
        E::File("opq/old", b"lower\n".to_vec(), 0o644),
    ]);
    let upper = layer(&[
        E::Dir("etc/"),
        E::File("etc/.wh.gone", Vec::new(), 0o644),
        E::Dir("opq/"),
        E::File("opq/.wh..wh..opq", Vec::new(), 0o644),
        E::File("opq/new", b"upper\n".to_vec(), 0o644),
        E::File("hello.txt", b"hello from layer two\n".to_vec(), 0o644),
    ]);
    vec![lower, upper]
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// An OCI image layout in `dir`: the first layer plain, the others gzip.
fn oci_layout(dir: &Path, layers: &[Vec<u8>]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = digest(bytes);
        std::fs::write(blobs.join(hex(&d)), bytes).unwrap();
        d
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let mut descs = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let (blob, mt) = if i == 0 {
            (l.clone(), "application/vnd.oci.image.layer.v1.tar")
        } else {
            (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip")
        };
        let d = put(&blob);
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": blob.len()}));
    }
    let cfg = config(&diff_ids);
    let cfg_d = put(&cfg);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": cfg.len()},
        "layers": descs,
    }))
    .unwrap();
    let man_d = put(&manifest);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_d, "size": manifest.len()}],
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A legacy `docker save` tarball at `path`.
fn docker_save(path: &Path, layers: &[Vec<u8>]) {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let cfg = config(&diff_ids);
    let cfg_name = format!("{}.json", hex(&digest(&cfg)));
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut names = Vec::new();
    for (l, d) in layers.iter().zip(&diff_ids) {
        let name = format!("{}/layer.tar", hex(d));
        add(&name, l);
        names.push(name);
    }
    add(&cfg_name, &cfg);
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": cfg_name, "RepoTags": ["isobench-test:latest"], "Layers": names}
    ]))
    .unwrap();
    add("manifest.json", &manifest);
    b.into_inner().unwrap().flush().unwrap();
}

/// What the merged tree must show: the upper layer's file, the lower
/// layer's kept file, and neither the whited-out file nor the opaque
/// directory's old content.
const LIST: &str = "/bin/busybox ls /etc /opq; /bin/busybox cat /hello.txt";

fn check_merged(out: &str) {
    assert!(out.contains("hello from layer two"), "{out}");
    assert!(out.contains("kept"), "{out}");
    assert!(out.contains("new"), "{out}");
    assert!(!out.contains("gone"), "whited out: {out}");
    assert!(!out.contains("old"), "opaque: {out}");
}

fn ready(vm: bool) -> bool {
    require(is_root(), "--image needs root")
        && require(
            Path::new(BUSYBOX).is_file(),
            "busybox-static (/bin/busybox) not installed",
        )
        && (!vm || require(vm_ready(), "QEMU or the guest kernel missing"))
}

fn exec(s: &Scratch, image: &Path, env: &str, cmd: &[&str]) -> std::process::Output {
    s.isobench()
        .args(["exec", "--env", env, "--image"])
        .arg(image)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap()
}

#[test]
fn exec_in_a_container_sees_the_merged_layers() {
    if !ready(false) {
        return;
    }
    let s = Scratch::new("img-exec-ct");
    let img = s.path.join("oci");
    oci_layout(&img, &busybox_layers());
    let out = exec(&s, &img, "container", &["/bin/sh", "-c", LIST]);
    assert!(out.status.success(), "{}", text(&out));
    check_merged(&String::from_utf8_lossy(&out.stdout));
    // The same layout inside a tarball (as newer `docker save` writes it).
    let archive = s.path.join("oci.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    b.append_dir_all(".", &img).unwrap();
    b.into_inner().unwrap().flush().unwrap();
    let out = exec(&s, &archive, "container", &["/bin/sh", "-c", LIST]);
    assert!(out.status.success(), "{}", text(&out));
    check_merged(&String::from_utf8_lossy(&out.stdout));
    // A program of the host that the image lacks is packed as without an image.
    let out = exec(&s, &img, "container", &["/bin/true"]);
    assert!(out.status.success(), "{}", text(&out));
    // In neither: refused before anything starts.
    let out = exec(&s, &img, "container", &["/no/such/program"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("in the image"), "{}", text(&out));
    // Native has no root file system to put an image in.
    let out = exec(&s, &img, "native", &["/bin/sh", "-c", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn exec_in_a_vm_sees_the_merged_layers() {
    if !ready(true) {
        return;
    }
    let s = Scratch::new("img-exec-vm");
    let img = s.path.join("save.tar");
    docker_save(&img, &busybox_layers());
    let out = exec(&s, &img, "vm", &["/bin/sh", "-c", LIST]);
    assert!(out.status.success(), "{}", text(&out));
    check_merged(&String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_run_on_a_docker_save_tarball_runs_the_images_shell_in_container_and_vm() {
    if !ready(true) {
        return;
    }
    let s = Scratch::new("img-run");
    let img = s.path.join("save.tar");
    docker_save(&img, &busybox_layers());
    let scenario = r#"
name = "image"
environments = ["container", "vm"]
reps = 1
warmups = 0

[[workload]]
name = "listing"
kind = "command"
argv = ["/bin/sh", "-c", "echo entries=$( (/bin/busybox ls /opq; /bin/busybox ls /etc) | /bin/busybox wc -w)"]
metrics = [{ name = "entries", regex = 'entries=(\d+)', unit = "count", better = "lower" }]
"#;
    let img_arg = img.to_string_lossy().into_owned();
    let out = s.run("image.toml", scenario, &["--image", &img_arg]);
    assert!(out.status.success(), "{}", text(&out));
    let run = common::latest(&s.reports());
    let rows = common::results(&run);
    // /opq: new; /etc: kept (gone whited out, old hidden by the opaque dir).
    for env in ["container", "vm"] {
        let v = rows
            .iter()
            .find(|r| r.1 == env && r.3 == "entries")
            .unwrap_or_else(|| panic!("no entries row for {env}: {rows:?}"));
        assert_eq!(v.5, 2.0, "{env}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap();
    let oci = &meta["image"]["oci"];
    assert_eq!(oci["format"], "docker-archive", "{meta}");
    assert_eq!(oci["layers"].as_array().unwrap().len(), 2, "{meta}");
    assert!(oci["unpacked_bytes"].as_u64().unwrap() > 100_000, "{meta}");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("docker-archive"),
        "the report names the image"
    );
    // Nothing of the run is left mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&s.path.to_string_lossy().into_owned()),
        "{mounts}"
    );
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    if !ready(false) {
        return;
    }
    let s = Scratch::new("img-digest");
    let img = s.path.join("oci");
    let mut layers = busybox_layers();
    // A layer of its own (unique content), so no cached copy answers for it.
    layers.push(layer(&[E::File(
        "marker",
        format!("{:?}", std::time::SystemTime::now()).into_bytes(),
        0o644,
    )]));
    oci_layout(&img, &layers);
    let d = digest(layers.last().unwrap());
    let blob = img.join("blobs/sha256");
    // Find the gzip blob of the last layer by decompressing each candidate.
    let target: PathBuf = std::fs::read_dir(&blob)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let bytes = std::fs::read(p).unwrap();
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
                .is_ok()
                && digest(&out) == d
        })
        .unwrap();
    let mut bytes = std::fs::read(&target).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&target, &bytes).unwrap();
    let out = exec(&s, &img, "container", &["/bin/sh", "-c", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text(&out).contains("digest") && text(&out).contains(&name),
        "{}",
        text(&out)
    );
}

#[test]
fn a_layer_entry_escaping_the_layer_is_refused() {
    if !ready(false) {
        return;
    }
    let s = Scratch::new("img-traversal");
    let img = s.path.join("save.tar");
    let mut layers = busybox_layers();
    layers.push(layer(&[E::Raw("../../escaped")]));
    docker_save(&img, &layers);
    let out = exec(&s, &img, "container", &["/bin/sh", "-c", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("`..`"), "{}", text(&out));
    let cache = isobench::image::cache::LayerCache::default_dir();
    assert!(!cache.join("escaped").exists());
    assert!(!cache.parent().unwrap().join("escaped").exists());
}

#[test]
fn an_image_too_large_for_the_guests_ram_is_refused_naming_both_sizes() {
    if !ready(true) {
        return;
    }
    let s = Scratch::new("img-ram");
    let img = s.path.join("save.tar");
    let mut layers = busybox_layers();
    layers.push(layer(&[E::File("big", vec![0u8; 48 << 20], 0o644)]));
    docker_save(&img, &layers);
    let out = s
        .isobench()
        .args(["exec", "--env", "vm", "--memory", "128M", "--image"])
        .arg(&img)
        .args(["--", "/bin/sh", "-c", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("128 MiB") && t.contains("initramfs"), "{t}");
}

#[test]
fn the_merged_tree_of_a_killed_run_is_unmounted_by_clean() {
    if !ready(true) {
        return;
    }
    let s = Scratch::new("img-kill");
    let img = s.path.join("save.tar");
    docker_save(&img, &busybox_layers());
    let mut child = s
        .isobench()
        .args(["exec", "--env", "vm", "--image"])
        .arg(&img)
        .args(["--", "/bin/sh", "-c", "/bin/busybox sleep 60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runtime = s.runtime().to_string_lossy().into_owned();
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.contains(&runtime))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !mounted() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(mounted(), "the merged tree was never mounted");
    child.kill().unwrap(); // SIGKILL: no clean-up of its own.
    child.wait().unwrap();
    let out = s.isobench().arg("clean").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!mounted(), "still mounted after clean: {}", text(&out));
    assert!(
        std::fs::read_dir(s.runs()).map_or(true, |d| d.count() == 0),
        "the run's directory is gone"
    );
}
