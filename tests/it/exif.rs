//! `mlyexport exif`: runs the real binary on downloads folders made here
//! (JSON records + JPEGs from the `image` crate) and reads the tags back with
//! kamadak-exif and exiftool. Touches only its own temp folders.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use exif::{In, Tag, Value};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// A JPEG with some texture, `w` x `h` pixels.
pub fn make_jpeg(w: u32, h: u32, seed: u32, quality: u8) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state % 12) as i32 - 6;
            let fx = x as f32 / w as f32;
            let fy = y as f32 / h as f32;
            let wave = ((fx * 40.0 + seed as f32).sin() * (fy * 23.0).cos() * 60.0) as i32;
            let sky = if fy < 0.4 { 90 } else { 0 };
            for (c, base) in [(0, 110), (1, 120), (2, 100)] {
                let v =
                    base + sky + wave * (c + 1) / 2 + noise + ((x / 37 + y / 29) % 3) as i32 * 15;
                px.push(v.clamp(0, 255) as u8);
            }
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(&px, w, h, image::ExtendedColorType::Rgb8)
        .expect("encode test JPEG");
    out
}

/// Inserts an APP1 segment right after SOI.
fn with_app1(jpeg: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A JPEG carrying camera EXIF: Orientation, Software, an old GPS latitude
/// and an IFD1 thumbnail. Returns the file and the thumbnail.
pub(crate) fn jpeg_with_camera_exif() -> (Vec<u8>, Vec<u8>) {
    let thumb = make_jpeg(16, 12, 9, 80);
    let fields = [
        exif::Field {
            tag: Tag::Orientation,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![6]),
        },
        exif::Field {
            tag: Tag::Software,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![b"OldCam 1.0".to_vec()]),
        },
        exif::Field {
            tag: Tag::GPSLatitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(vec![(1, 1).into(), (0, 1).into(), (0, 1).into()]),
        },
        exif::Field {
            tag: Tag::Compression,
            ifd_num: In::THUMBNAIL,
            value: Value::Short(vec![6]),
        },
        exif::Field {
            tag: Tag::XResolution,
            ifd_num: In::THUMBNAIL,
            value: Value::Rational(vec![(72, 1).into()]),
        },
        exif::Field {
            tag: Tag::YResolution,
            ifd_num: In::THUMBNAIL,
            value: Value::Rational(vec![(72, 1).into()]),
        },
        exif::Field {
            tag: Tag::ResolutionUnit,
            ifd_num: In::THUMBNAIL,
            value: Value::Short(vec![2]),
        },
    ];
    let mut w = exif::experimental::Writer::new();
    for f in &fields {
        w.push_field(f);
    }
    w.set_jpeg(&thumb, In::THUMBNAIL);
    let mut tiff = std::io::Cursor::new(Vec::new());
    w.write(&mut tiff, false).unwrap();
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend(tiff.into_inner());
    (with_app1(&make_jpeg(160, 120, 3, 85), &payload), thumb)
}

/// The fields `fetch` writes for an image, with a position at `lon`, `lat`.
pub(crate) fn record(id: u64, lon: f64, lat: f64) -> Json {
    json!({
        "id": id.to_string(),
        "captured_at": 1_625_133_600_123_i64,
        "geometry": {"type": "Point", "coordinates": [lon + 0.0001, lat + 0.0001]},
        "computed_geometry": {"type": "Point", "coordinates": [lon, lat]},
        "compass_angle": 91.5,
        "computed_compass_angle": 90.25,
        "altitude": 4_294_967_291.5_f64,
        "computed_altitude": 34.5,
        "sequence": "seq1",
        "is_pano": false,
        "camera_type": "perspective",
        "make": "GoPro",
        "model": "HERO7",
        "creator": {"username": "alice", "id": "42"},
        "width": 4000,
        "height": 3000,
    })
}

/// A downloads folder in the `fetch` layout.
pub(crate) struct Folder {
    pub(crate) dir: tempfile::TempDir,
}

impl Folder {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("downloads")
    }

    /// Writes `<root>/g1/<id>.json` (with the `mlyexport` block) and `<id>.jpg`.
    pub(crate) fn add(&self, mut rec: Json, jpeg: &[u8]) -> PathBuf {
        let id = rec["id"].as_str().unwrap().to_string();
        let dir = self.root().join("g1");
        fs::create_dir_all(&dir).unwrap();
        let size = image::ImageReader::new(std::io::Cursor::new(jpeg))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok())
            .unwrap_or((0, 0));
        rec["mlyexport"] = json!({
            "schema_version": 1, "grid": "g1", "size": "original", "file": format!("{id}.jpg"),
            "bytes": jpeg.len(), "sha256": hex(&Sha256::digest(jpeg)),
            "pixel_width": size.0, "pixel_height": size.1,
            "downloaded_at": "2024-05-01T12:00:00Z", "tool_version": "0.1.0",
        });
        fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_vec_pretty(&rec).unwrap(),
        )
        .unwrap();
        let jpg = dir.join(format!("{id}.jpg"));
        fs::write(&jpg, jpeg).unwrap();
        jpg
    }

    pub(crate) fn run(&self, extra: &[&str]) -> assert_cmd::assert::Assert {
        assert_cmd::Command::cargo_bin("mlyexport")
            .unwrap()
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TZ", "Pacific/Kiritimati") // the machine's zone must not matter
            .current_dir(self.dir.path())
            .arg("exif")
            .args(extra)
            .assert()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// exiftool's view of some files: `-a -G1 -n -all -validate` JSON (with `-n` a clean file validates as `0 0 0`: errors, warnings, minor warnings), one object per file.
fn exiftool(paths: &[&Path]) -> Vec<Json> {
    let out = Process::new("exiftool")
        .args(["-j", "-a", "-G1", "-n", "-all", "-validate"])
        .args(paths)
        .output()
        .expect("exiftool runs (it is installed by the setup script)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kamadak(path: &Path) -> exif::Exif {
    exif::Reader::new()
        .read_from_container(&mut std::io::BufReader::new(fs::File::open(path).unwrap()))
        .unwrap()
}

fn degrees(e: &exif::Exif, tag: Tag, reference: Tag) -> f64 {
    let Value::Rational(r) = &e.get_field(tag, In::PRIMARY).unwrap().value else {
        panic!("{tag} is not rational")
    };
    let v = r[0].to_f64() + r[1].to_f64() / 60.0 + r[2].to_f64() / 3600.0;
    match e
        .get_field(reference, In::PRIMARY)
        .unwrap()
        .display_value()
        .to_string()
        .as_str()
    {
        "S" | "W" => -v,
        _ => v,
    }
}

/// The JPEG split into its segments before the scan (marker, whole bytes)
/// and the rest of the file from the first SOS on.
fn segments(j: &[u8]) -> (Vec<(u8, Vec<u8>)>, Vec<u8>) {
    assert_eq!(&j[..2], &[0xFF, 0xD8]);
    let mut pos = 2;
    let mut segs = Vec::new();
    loop {
        assert_eq!(j[pos], 0xFF);
        let marker = j[pos + 1];
        if marker == 0xDA {
            return (segs, j[pos..].to_vec());
        }
        let len = usize::from(u16::from_be_bytes([j[pos + 2], j[pos + 3]]));
        segs.push((marker, j[pos..pos + 2 + len].to_vec()));
        pos += 2 + len;
    }
}

/// Asserts that everything but the EXIF and XMP APP1 segments is unchanged
/// and that the pixels decode the same.
fn assert_lossless(before: &[u8], after: &[u8]) {
    let is_ours = |(m, b): &(u8, Vec<u8>)| {
        *m == 0xE1
            && (b[4..].starts_with(b"Exif\0\0")
                || b[4..].starts_with(b"http://ns.adobe.com/xap/1.0/\0"))
    };
    let (sb, scan_b) = segments(before);
    let (sa, scan_a) = segments(after);
    assert!(scan_a == scan_b, "compressed data changed");
    let keep = |s: Vec<(u8, Vec<u8>)>| s.into_iter().filter(|x| !is_ours(x)).collect::<Vec<_>>();
    assert_eq!(keep(sb), keep(sa), "a segment other than EXIF/XMP changed");
    let a = image::load_from_memory(before).unwrap().to_rgb8();
    let b = image::load_from_memory(after).unwrap().to_rgb8();
    assert!(a == b, "decoded pixels differ");
}

fn tag<'a>(t: &'a Json, name: &str) -> &'a Json {
    &t[name]
}

#[test]
fn tags_read_back_with_kamadak_and_exiftool() {
    let f = Folder::new();
    let berlin = f.add(
        record(101, 13.377_704_1, 52.516_275_3),
        &make_jpeg(320, 240, 1, 85),
    );
    let buenos_aires = f.add(
        record(102, -58.381_559_2, -34.603_684_3),
        &make_jpeg(320, 240, 2, 85),
    );
    let mut null = record(103, 0.0, 0.0);
    null["geometry"] = json!({"type": "Point", "coordinates": [0.0, 0.0]});
    let null_island = f.add(null, &make_jpeg(64, 48, 3, 85));
    let mut no_alt = record(104, 151.215_256_7, -33.856_784_3);
    no_alt.as_object_mut().unwrap().remove("altitude");
    no_alt.as_object_mut().unwrap().remove("computed_altitude");
    no_alt.as_object_mut().unwrap().remove("make");
    let sydney = f.add(no_alt, &make_jpeg(64, 48, 4, 85));
    let before: Vec<Vec<u8>> = [&berlin, &buenos_aires, &null_island, &sydney]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();

    let out = f.run(&[]).success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(stdout.contains("images: 4"), "{stdout}");
    assert!(stdout.contains("written: 4"), "{stdout}");
    assert!(
        stdout.contains("position from: computed 4, original 0"),
        "{stdout}"
    );

    let expected = [
        (
            &berlin,
            13.377_704_1,
            52.516_275_3,
            "2021:07:01 12:00:00",
            "+02:00",
        ),
        (
            &buenos_aires,
            -58.381_559_2,
            -34.603_684_3,
            "2021:07:01 07:00:00",
            "-03:00",
        ),
        (&null_island, 0.0, 0.0, "2021:07:01 10:00:00", "+00:00"),
        (
            &sydney,
            151.215_256_7,
            -33.856_784_3,
            "2021:07:01 20:00:00",
            "+10:00",
        ),
    ];
    let paths: Vec<&Path> = expected.iter().map(|e| e.0.as_path()).collect();
    let tool = exiftool(&paths);
    for (i, (path, lon, lat, local, offset)) in expected.iter().enumerate() {
        let k = kamadak(path);
        assert!((degrees(&k, Tag::GPSLatitude, Tag::GPSLatitudeRef) - lat).abs() < 1e-7);
        assert!((degrees(&k, Tag::GPSLongitude, Tag::GPSLongitudeRef) - lon).abs() < 1e-7);

        let t = &tool[i];
        assert_eq!(
            tag(t, "ExifTool:Validate"),
            "0 0 0",
            "exiftool -validate: {t}"
        );
        let lat_ref = if *lat < 0.0 { "S" } else { "N" };
        let lon_ref = if *lon < 0.0 { "W" } else { "E" };
        assert_eq!(tag(t, "GPS:GPSLatitudeRef"), lat_ref, "{t}");
        assert_eq!(tag(t, "GPS:GPSLongitudeRef"), lon_ref, "{t}");
        assert!(
            (tag(t, "GPS:GPSLatitude").as_f64().unwrap() - lat.abs()).abs() < 1e-7,
            "{t}"
        );
        assert!(
            (tag(t, "GPS:GPSLongitude").as_f64().unwrap() - lon.abs()).abs() < 1e-7,
            "{t}"
        );
        assert!(
            (tag(t, "Composite:GPSLatitude").as_f64().unwrap() - lat).abs() < 1e-7,
            "{t}"
        );
        assert_eq!(tag(t, "GPS:GPSVersionID"), "2 3 0 0");
        assert_eq!(tag(t, "GPS:GPSImgDirectionRef"), "T");
        assert_eq!(tag(t, "GPS:GPSImgDirection"), 90.25);
        assert_eq!(tag(t, "GPS:GPSDateStamp"), "2021:07:01");
        assert_eq!(tag(t, "GPS:GPSTimeStamp"), "10:00:00.123");
        assert_eq!(tag(t, "ExifIFD:DateTimeOriginal"), *local, "{t}");
        assert_eq!(tag(t, "ExifIFD:OffsetTimeOriginal"), *offset, "{t}");
        assert_eq!(tag(t, "ExifIFD:SubSecTimeOriginal"), 123, "{t}");
        assert_eq!(
            tag(t, "ExifIFD:ImageUniqueID")
                .to_string()
                .trim_matches('"'),
            format!("{}", 101 + i)
        );
        assert_eq!(
            tag(t, "IFD0:ImageDescription"),
            format!("Mapillary image {}", 101 + i).as_str()
        );
        assert_eq!(tag(t, "IFD0:Artist"), "alice");
        assert_eq!(
            tag(t, "IFD0:Copyright"),
            "CC BY-SA 4.0, Mapillary contributors (creator: alice)"
        );
        assert_lossless(&before[i], &fs::read(path).unwrap());
    }
    // Repaired altitude of the chosen (computed) source; none when unknown.
    assert_eq!(tag(&tool[0], "GPS:GPSAltitude"), 34.5);
    assert_eq!(tag(&tool[0], "GPS:GPSAltitudeRef"), 0);
    assert_eq!(tag(&tool[0], "IFD0:Make"), "GoPro");
    assert!(tool[3].get("GPS:GPSAltitude").is_none(), "{}", tool[3]);
    assert!(tool[3].get("GPS:GPSAltitudeRef").is_none());
    assert!(tool[3].get("IFD0:Make").is_none());
}

#[test]
fn original_position_and_a_wrapped_altitude() {
    let f = Folder::new();
    let p = f.add(record(7, 13.4, 52.5), &make_jpeg(64, 48, 1, 85));
    let out = f.run(&["--position", "original"]).success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout);
    assert!(
        stdout.contains("position from: computed 0, original 1"),
        "{stdout}"
    );
    let t = &exiftool(&[&p])[0];
    assert!((tag(t, "Composite:GPSLongitude").as_f64().unwrap() - 13.4001).abs() < 1e-9);
    assert_eq!(tag(t, "GPS:GPSImgDirection"), 91.5);
    assert_eq!(tag(t, "GPS:GPSAltitude"), 4.5);
    assert_eq!(tag(t, "GPS:GPSAltitudeRef"), 1, "below sea level");
}

#[test]
fn second_run_leaves_files_byte_identical() {
    let f = Folder::new();
    let (camera, _) = jpeg_with_camera_exif();
    let mut pano = record(2, 2.35, 48.85);
    pano["is_pano"] = json!(true);
    let paths = [
        f.add(record(1, 2.35, 48.85), &make_jpeg(96, 64, 5, 85)),
        f.add(pano, &make_jpeg(128, 64, 6, 85)),
        f.add(record(3, -0.1, 51.5), &camera),
    ];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&paths[0], fs::Permissions::from_mode(0o640)).unwrap();
    }
    f.run(&[]).success();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&paths[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the JPEG's permissions changed");
    }
    let first: Vec<Vec<u8>> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
    let out = f.run(&[]).success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout);
    assert!(stdout.contains("written: 0"), "{stdout}");
    assert!(stdout.contains("already up to date: 3"), "{stdout}");
    for (p, bytes) in paths.iter().zip(&first) {
        assert!(
            fs::read(p).unwrap() == *bytes,
            "{} changed on the second run",
            p.display()
        );
    }
    // Leaves no temp files behind.
    let names: Vec<String> = fs::read_dir(f.root().join("g1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
}

#[test]
fn existing_camera_exif_is_kept() {
    let f = Folder::new();
    let (camera, thumb) = jpeg_with_camera_exif();
    let p = f.add(record(9, -0.127_758_3, 51.507_350_9), &camera);
    f.run(&[]).success();
    let after = fs::read(&p).unwrap();
    assert_lossless(&camera, &after);
    let t = &exiftool(&[&p])[0];
    assert_eq!(
        tag(t, "ExifTool:Validate"),
        "0 0 0",
        "exiftool -validate: {t}"
    );
    assert_eq!(tag(t, "IFD0:Orientation"), 6);
    assert_eq!(tag(t, "IFD0:Software"), "OldCam 1.0");
    assert!((tag(t, "Composite:GPSLatitude").as_f64().unwrap() - 51.507_350_9).abs() < 1e-7);
    assert_eq!(
        tag(t, "IFD1:ThumbnailLength").as_u64(),
        Some(thumb.len() as u64)
    );
    let out = Process::new("exiftool")
        .args(["-b", "-ThumbnailImage"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.stdout == thumb, "thumbnail changed");
    let k = kamadak(&p);
    assert_eq!(
        k.get_field(Tag::Orientation, In::PRIMARY)
            .unwrap()
            .value
            .get_uint(0),
        Some(6)
    );
}

/// Inserts an APPn segment (ICC profiles and similar) right after SOI.
fn with_app(jpeg: &[u8], marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn segments_longer_than_the_first_read_are_kept() {
    // Four 60 KB APP2 segments (240 KB before the scan): more than the
    // first bytes read, so the rest of the head is read before tagging.
    let f = Folder::new();
    let mut big = make_jpeg(64, 48, 3, 90);
    for i in 0..4u8 {
        let payload: Vec<u8> = (0..60_000u32).map(|k| (k % 251) as u8 ^ i).collect();
        big = with_app(&big, 0xE2, &payload);
    }
    let p = f.add(record(11, 151.209_295_5, -33.868_82), &big);
    f.run(&[]).success();
    let after = fs::read(&p).unwrap();
    assert_lossless(&big, &after);
    let t = &exiftool(&[&p])[0];
    assert!((tag(t, "Composite:GPSLongitude").as_f64().unwrap() - 151.209_295_5).abs() < 1e-7);
    f.run(&[]).success();
    assert!(
        fs::read(&p).unwrap() == after,
        "a second run changed the file"
    );
}

#[test]
fn panorama_gets_gpano_with_the_downloaded_size() {
    let f = Folder::new();
    let mut rec = record(5, 24.94, 60.17);
    rec["is_pano"] = json!(true);
    rec["camera_type"] = json!("spherical");
    rec["width"] = json!(5760); // of the upload; the download is smaller
    rec["height"] = json!(2880);
    let jpeg = make_jpeg(256, 128, 7, 85);
    let p = f.add(rec, &jpeg);
    let out = f.run(&[]).success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout);
    assert!(
        stdout.contains("panoramas tagged (XMP GPano): 1"),
        "{stdout}"
    );
    assert_lossless(&jpeg, &fs::read(&p).unwrap());
    let t = &exiftool(&[&p])[0];
    assert_eq!(
        tag(t, "ExifTool:Validate"),
        "0 0 0",
        "exiftool -validate: {t}"
    );
    assert_eq!(tag(t, "XMP-GPano:ProjectionType"), "equirectangular");
    assert_eq!(tag(t, "XMP-GPano:UsePanoramaViewer"), true);
    assert_eq!(tag(t, "XMP-GPano:FullPanoWidthPixels"), 256);
    assert_eq!(tag(t, "XMP-GPano:FullPanoHeightPixels"), 128);
    assert_eq!(tag(t, "XMP-GPano:CroppedAreaImageWidthPixels"), 256);
    assert_eq!(tag(t, "XMP-GPano:CroppedAreaTopPixels"), 0);
    assert_eq!(tag(t, "XMP-GPano:PoseHeadingDegrees"), 90.25);
    assert!(tag(t, "GPS:GPSLatitude").is_number());
}

#[test]
fn corrupt_files_are_reported_and_skipped() {
    let f = Folder::new();
    let good = f.add(record(1, 10.0, 50.0), &make_jpeg(64, 48, 1, 85));
    let whole = make_jpeg(320, 240, 2, 85);
    let truncated = f.add(record(2, 10.0, 50.0), &whole[..whole.len() / 10]);
    let html = f.add(
        record(3, 10.0, 50.0),
        b"<html><body>403 Forbidden</body></html>",
    );
    let bad_json_jpg = f.add(record(4, 10.0, 50.0), &make_jpeg(64, 48, 4, 85));
    let bad_json = bad_json_jpg.with_extension("json");
    fs::write(&bad_json, "{\"id\": \"4\", ").unwrap();
    let missing = f.add(record(5, 10.0, 50.0), &make_jpeg(64, 48, 5, 85));
    fs::remove_file(&missing).unwrap();
    let renamed = f.add(record(6, 10.0, 50.0), &make_jpeg(64, 48, 6, 85));
    fs::write(
        renamed.with_extension("json"),
        record(66, 10.0, 50.0).to_string(),
    )
    .unwrap();
    let untouched: Vec<(PathBuf, Vec<u8>)> = [&truncated, &html, &bad_json_jpg, &renamed]
        .iter()
        .map(|p| (p.to_path_buf(), fs::read(p).unwrap()))
        .collect();

    let out = f.run(&[]).code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stdout.contains("written: 1"), "{stdout}");
    assert!(stdout.contains("skipped: 5"), "{stdout}");
    assert!(
        stderr.contains("2.jpg") && stderr.contains("truncated JPEG"),
        "{stderr}"
    );
    assert!(
        stderr.contains("3.jpg") && stderr.contains("not a JPEG"),
        "{stderr}"
    );
    assert!(
        stderr.contains("4.json") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("5.json") && stderr.contains("no JPEG"),
        "{stderr}"
    );
    assert!(
        stderr.contains("6.json") && stderr.contains("id `66` differs"),
        "{stderr}"
    );
    for (p, bytes) in untouched {
        assert!(
            fs::read(&p).unwrap() == bytes,
            "{} was modified",
            p.display()
        );
    }
    assert!(exiftool(&[&good])[0].get("GPS:GPSLatitude").is_some());
}

#[test]
fn an_image_without_position_gets_no_gps_and_is_not_fatal() {
    let f = Folder::new();
    let mut rec = record(8, 0.0, 0.0);
    let o = rec.as_object_mut().unwrap();
    o.remove("geometry");
    o.remove("computed_geometry");
    let p = f.add(rec, &make_jpeg(64, 48, 1, 85));
    let out = f.run(&[]).success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout);
    assert!(
        stdout.contains("without position (no GPS tags): 1"),
        "{stdout}"
    );
    let t = &exiftool(&[&p])[0];
    assert!(
        t.as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("GPS:")),
        "{t}"
    );
    assert!(
        t.get("ExifIFD:DateTimeOriginal").is_none(),
        "no place, so no local time"
    );
    assert_eq!(tag(t, "IFD0:Artist"), "alice");
}

#[test]
fn the_old_tools_layout_is_read() {
    let f = Folder::new();
    let root = f.root();
    fs::create_dir_all(root.join("jsons")).unwrap();
    fs::create_dir_all(root.join("images")).unwrap();
    fs::write(
        root.join("jsons/77.json"),
        record(77, -122.42, 37.77).to_string(),
    )
    .unwrap();
    let jpg = root.join("images/77.jpg");
    fs::write(&jpg, make_jpeg(64, 48, 1, 85)).unwrap();
    f.run(&["--input", root.to_str().unwrap()]).success();
    let t = &exiftool(&[&jpg])[0];
    assert_eq!(tag(t, "GPS:GPSLongitudeRef"), "W");
    assert_eq!(tag(t, "ExifIFD:OffsetTimeOriginal"), "-07:00");
}

#[test]
fn a_folder_without_images_is_an_error() {
    let f = Folder::new();
    fs::create_dir_all(f.root()).unwrap();
    let out = f.run(&[]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.contains("no image JSON files in") && stderr.contains("downloads"),
        "{stderr}"
    );
    let out = f.run(&["--input", "nowhere"]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("nowhere"), "{stderr}");
}

/// Writes the seed JPEGs of `scripts/bench-exif.sh` (about 1600x1200 and
/// 200 KB each) into `$MLYEXPORT_BENCH_SEED_DIR`. Not a test; run by the script.
#[test]
#[ignore = "a helper of scripts/bench-exif.sh"]
fn bench_seed_jpegs() {
    let dir =
        PathBuf::from(std::env::var("MLYEXPORT_BENCH_SEED_DIR").expect("MLYEXPORT_BENCH_SEED_DIR"));
    fs::create_dir_all(&dir).unwrap();
    for seed in 0..4 {
        fs::write(
            dir.join(format!("seed{seed}.jpg")),
            make_jpeg(1600, 1200, seed, 75),
        )
        .unwrap();
    }
}
