//! The files in `fixtures/` are what `fixtures/README.md` says they are:
//! the API answer has the simulator's fields and JSON types, the two AOI
//! files hold the same polygon, and the JPEGs carry (or lack) the EXIF they
//! should. Also regenerates the JPEGs on request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlysim::{DEMO_TOKEN, SimConfig};
use serde_json::Value;

use crate::common::*;
use crate::exif::{Folder, jpeg_with_camera_exif, make_jpeg, record};

/// `fixtures/<rel>` in the repository.
pub(crate) fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// The JSON type of each field of an image object.
fn kinds(image: &Value) -> BTreeMap<String, &'static str> {
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    image
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), kind(v)))
        .collect()
}

#[tokio::test]
async fn the_simulator_answers_with_the_api_fixtures_fields_and_types() {
    let fixture = read_json(&fixture("api/images.json"));
    let full = &fixture["data"][0];
    let env = TestEnv::with_sim(SimConfig::default());
    let img = env
        .sim()
        .world()
        .images()
        .iter()
        .find(|i| {
            i.computed_geometry.is_some()
                && i.altitude.is_some_and(|a| a < 1e6)
                && i.make.is_some()
                && i.organization.is_some()
                && i.camera_parameters.is_some()
                && !i.detection_ids.is_empty()
        })
        .expect("an image with every field");
    let fields: Vec<&String> = full.as_object().unwrap().keys().collect();
    let url = format!(
        "{}/{}?fields={}",
        env.sim().graph_url(),
        img.id,
        fields
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let answer: Value = reqwest::Client::new()
        .get(url)
        .header("Authorization", format!("OAuth {DEMO_TOKEN}"))
        .send()
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(kinds(&answer), kinds(full));
}

#[test]
fn the_two_aoi_fixtures_hold_the_same_polygon() {
    let wgs84 = mlyexport::aoi::Aoi::read(&fixture("aoi/zurich-wgs84.geojson"), None).unwrap();
    let lv95 = mlyexport::aoi::Aoi::read(&fixture("aoi/zurich-lv95.geojson"), None).unwrap();
    // A grid of points over the polygon and its hole, none near an edge.
    let mut inside = 0;
    for i in 0..50 {
        for j in 0..50 {
            let p = mlyexport::model::LonLat::new(
                8.5201 + f64::from(i) * 0.00044,
                47.3601 + f64::from(j) * 0.00041,
            )
            .unwrap();
            assert_eq!(wgs84.contains(p), lv95.contains(p), "{p:?}");
            inside += usize::from(wgs84.contains(p));
        }
    }
    assert!(inside > 1000, "{inside}");
}

/// EXIF tags as `exiftool -n -j -G1` reads them.
fn exiftool(p: &Path) -> Value {
    let out = std::process::Command::new("exiftool")
        .args(["-n", "-j", "-G1"])
        .arg(p)
        .output()
        .expect("exiftool runs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("exiftool JSON");
    v[0].clone()
}

#[test]
fn the_jpeg_fixtures_carry_the_exif_they_should() {
    let plain = exiftool(&fixture("jpeg/plain.jpg"));
    assert!(plain.get("IFD0:Orientation").is_none(), "{plain}");
    assert!(plain.get("GPS:GPSLatitude").is_none(), "{plain}");
    let camera = exiftool(&fixture("jpeg/camera-exif.jpg"));
    assert_eq!(camera["IFD0:Orientation"], 6);
    assert_eq!(camera["IFD0:Software"], "OldCam 1.0");
    assert!(camera.get("IFD1:ThumbnailLength").is_some(), "{camera}");
    let tagged = exiftool(&fixture("jpeg/mlyexport-gps.jpg"));
    let lat = tagged["GPS:GPSLatitude"].as_f64().unwrap();
    let lon = tagged["GPS:GPSLongitude"].as_f64().unwrap();
    assert!(
        (lat - 52.52).abs() < 1e-6 && (lon - 13.40).abs() < 1e-6,
        "{tagged}"
    );
}

/// Writes `fixtures/jpeg/*.jpg` again; run as `fixtures/README.md` says.
#[test]
#[ignore = "writes into fixtures/; run by hand with MLYEXPORT_REGENERATE_FIXTURES=1"]
fn regenerate_jpeg_fixtures() {
    if std::env::var_os("MLYEXPORT_REGENERATE_FIXTURES").is_none() {
        return;
    }
    let dir = fixture("jpeg");
    std::fs::create_dir_all(&dir).unwrap();
    let plain = make_jpeg(160, 120, 3, 85);
    std::fs::write(dir.join("plain.jpg"), &plain).unwrap();
    std::fs::write(dir.join("camera-exif.jpg"), jpeg_with_camera_exif().0).unwrap();
    let f = Folder::new();
    let p = f.add(record(1, 13.40, 52.52), &plain);
    f.run(&[]).success();
    std::fs::copy(&p, dir.join("mlyexport-gps.jpg")).unwrap();
}
