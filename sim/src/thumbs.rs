//! Signed, expiring thumbnail URLs and the cached JPEG renditions the CDN serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// The renditions a Graph answer can link to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThumbSize {
    W256,
    W1024,
    W2048,
    Original,
}

impl ThumbSize {
    pub fn from_field(field: &str) -> Option<ThumbSize> {
        match field {
            "thumb_256_url" => Some(ThumbSize::W256),
            "thumb_1024_url" => Some(ThumbSize::W1024),
            "thumb_2048_url" => Some(ThumbSize::W2048),
            "thumb_original_url" => Some(ThumbSize::Original),
            _ => None,
        }
    }

    fn code(self) -> u16 {
        match self {
            ThumbSize::W256 => 256,
            ThumbSize::W1024 => 1024,
            ThumbSize::W2048 => 2048,
            ThumbSize::Original => 0,
        }
    }

    fn from_code(code: u16) -> Option<ThumbSize> {
        match code {
            256 => Some(ThumbSize::W256),
            1024 => Some(ThumbSize::W1024),
            2048 => Some(ThumbSize::W2048),
            0 => Some(ThumbSize::Original),
            _ => None,
        }
    }

    pub fn width(self, original_width: u32) -> u32 {
        match self {
            ThumbSize::Original => original_width,
            other => u32::from(other.code()),
        }
    }
}

pub fn height_for(width: u32, pano: bool) -> u32 {
    if pano { width / 2 } else { width * 3 / 4 }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Mints and checks CDN URLs. The secret derives from the world seed.
#[derive(Debug)]
pub struct Signer {
    secret: [u8; 32],
    mask: [u8; 16],
}

/// What a valid CDN path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThumbRef {
    pub id: u64,
    pub size: ThumbSize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    Malformed,
    BadSignature,
    Expired,
}

impl Signer {
    pub fn new(seed: u64) -> Signer {
        let mut h = Sha256::new();
        h.update(b"mlysim-cdn-secret");
        h.update(seed.to_le_bytes());
        let secret: [u8; 32] = h.finalize().into();
        let mut h = Sha256::new();
        h.update(secret);
        h.update(b"token-mask");
        let mut mask = [0u8; 16];
        mask.copy_from_slice(&h.finalize()[..16]);
        Signer { secret, mask }
    }

    fn signature(&self, token: &str, stp: Option<&str>, oe: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(token.as_bytes());
        h.update(b"|");
        h.update(stp.unwrap_or("").as_bytes());
        h.update(b"|");
        h.update(oe.as_bytes());
        format!("00_{}", hex::encode(&h.finalize()[..20]))
    }

    /// A full URL for one rendition; `nonce` makes every minted URL distinct.
    #[allow(clippy::too_many_arguments)]
    pub fn mint(
        &self,
        cdn_url: &str,
        id: u64,
        size: ThumbSize,
        pano: bool,
        original_width: u32,
        expiry_unix: u64,
        nonce: u64,
    ) -> String {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&id.to_le_bytes());
        raw[8..10].copy_from_slice(&size.code().to_le_bytes());
        raw[10..16].copy_from_slice(&nonce.to_le_bytes()[..6]);
        for (b, m) in raw.iter_mut().zip(self.mask) {
            *b ^= m;
        }
        let token = format!("An{}", hex::encode(raw));
        let oe = format!("{expiry_unix:X}");
        let stp = match size {
            ThumbSize::Original => None,
            s => {
                let w = s.width(original_width);
                Some(format!("s{w}x{}", height_for(w, pano)))
            }
        };
        let oh = self.signature(&token, stp.as_deref(), &oe);
        let stp_param = stp.map(|s| format!("stp={s}&")).unwrap_or_default();
        format!("{cdn_url}/m1/v/t6/{token}?{stp_param}ccb=10-5&oh={oh}&oe={oe}&_nc_sid=201bca")
    }

    /// Checks a CDN request: the token from the path plus the `stp`, `oh` and `oe` parameters.
    pub fn check(
        &self,
        token: &str,
        stp: Option<&str>,
        oh: Option<&str>,
        oe: Option<&str>,
        now_unix: f64,
    ) -> Result<ThumbRef, CheckError> {
        let (Some(oh), Some(oe)) = (oh, oe) else {
            return Err(CheckError::Malformed);
        };
        let hexpart = token.strip_prefix("An").ok_or(CheckError::Malformed)?;
        let bytes = hex::decode(hexpart).map_err(|_| CheckError::Malformed)?;
        if bytes.len() != 16 {
            return Err(CheckError::Malformed);
        }
        if self.signature(token, stp, oe) != oh {
            return Err(CheckError::BadSignature);
        }
        let expiry = u64::from_str_radix(oe, 16).map_err(|_| CheckError::Malformed)?;
        if now_unix >= expiry as f64 {
            return Err(CheckError::Expired);
        }
        let mut raw = [0u8; 16];
        for ((r, b), m) in raw.iter_mut().zip(bytes).zip(self.mask) {
            *r = b ^ m;
        }
        let id = u64::from_le_bytes(raw[..8].try_into().map_err(|_| CheckError::Malformed)?);
        let code = u16::from_le_bytes([raw[8], raw[9]]);
        let size = ThumbSize::from_code(code).ok_or(CheckError::Malformed)?;
        Ok(ThumbRef { id, size })
    }
}

/// The expiry (unix seconds) of URLs minted now with this TTL.
pub fn expiry_for(ttl: Duration) -> u64 {
    (unix_now() + ttl.as_secs_f64()).floor() as u64
}

type Slot = Arc<OnceLock<Arc<Vec<u8>>>>;

/// Lazily encoded JPEG renditions, one per (width, panorama) pair.
#[derive(Debug, Default)]
pub struct JpegCache {
    slots: Mutex<HashMap<(u32, bool), Slot>>,
}

impl JpegCache {
    /// The shared rendition; encodes it on first use (slow: call from a blocking thread).
    pub fn base(&self, width: u32, pano: bool) -> Arc<Vec<u8>> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry((width, pano)).or_default().clone()
        };
        slot.get_or_init(|| Arc::new(encode_scene(width, height_for(width, pano), pano)))
            .clone()
    }
}

/// A street-like picture (sky, horizon, road, noise) encoded at quality 80.
pub fn encode_scene(width: u32, height: u32, pano: bool) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(width) << 1 | u64::from(pano));
    let (w, h) = (width as usize, height.max(1) as usize);
    let horizon = h * 11 / 20;
    let mut px = vec![0u8; w * h * 3];
    let blocks: Vec<i32> = (0..(w / 16 + 1) * (h / 16 + 1))
        .map(|_| rng.random_range(-40..40))
        .collect();
    for y in 0..h {
        for x in 0..w {
            let b = blocks[(y / 16) * (w / 16 + 1) + x / 16];
            let n: i32 = rng.random_range(-9..9);
            let (r, g, bl) = if y < horizon {
                let t = (y * 90 / horizon.max(1)) as i32;
                (110 + t, 150 + t, 220 + b / 4)
            } else {
                let road =
                    (x as i64 - w as i64 / 2).unsigned_abs() as usize * h < (y - horizon) * w;
                if road {
                    (90 + b / 2, 90 + b / 2, 95 + b / 2)
                } else {
                    (70 + b, 120 + b, 60 + b / 2)
                }
            };
            let i = (y * w + x) * 3;
            px[i] = (r + n).clamp(0, 255) as u8;
            px[i + 1] = (g + n).clamp(0, 255) as u8;
            px[i + 2] = (bl + n).clamp(0, 255) as u8;
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 80)
        .write_image(&px, width, h as u32, ExtendedColorType::Rgb8)
        .expect("encoding an in-memory JPEG cannot fail");
    out
}

/// Makes a rendition unique per image: adds a COM segment naming the id after SOI (and after
/// the JFIF APP0 segment when there is one, so the file stays valid JFIF).
pub fn personalise(base: &[u8], id: u64) -> Vec<u8> {
    let text = format!("mlysim image {id}");
    let mut at = 2;
    if base.len() > 6 && base[2] == 0xFF && base[3] == 0xE0 {
        at = 4 + usize::from(u16::from_be_bytes([base[4], base[5]]));
    }
    let len = (text.len() + 2) as u16;
    let mut out = Vec::with_capacity(base.len() + text.len() + 4);
    out.extend_from_slice(&base[..at]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&base[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_url_round_trips() {
        let s = Signer::new(1);
        let url = s.mint(
            "http://x",
            123_456_789_012_345,
            ThumbSize::W1024,
            false,
            1600,
            4_000_000_000,
            7,
        );
        let (path, query) = url.split_once('?').unwrap();
        let token = path.rsplit('/').next().unwrap();
        let q: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap();
        assert_eq!(q["stp"], "s1024x768");
        let r = s
            .check(token, Some(&q["stp"]), Some(&q["oh"]), Some(&q["oe"]), 1.0)
            .unwrap();
        assert_eq!(
            r,
            ThumbRef {
                id: 123_456_789_012_345,
                size: ThumbSize::W1024
            }
        );
        assert_eq!(
            s.check(
                token,
                Some("s2048x1536"),
                Some(&q["oh"]),
                Some(&q["oe"]),
                1.0
            ),
            Err(CheckError::BadSignature)
        );
        let other = s.mint(
            "http://x",
            123_456_789_012_345,
            ThumbSize::W1024,
            false,
            1600,
            4_000_000_000,
            8,
        );
        assert_ne!(url, other);
    }

    #[test]
    fn signature_expires() {
        let s = Signer::new(1);
        let url = s.mint("http://x", 5, ThumbSize::Original, true, 1600, 1000, 0);
        assert!(!url.contains("stp="));
        let (path, query) = url.split_once('?').unwrap();
        let token = path.rsplit('/').next().unwrap();
        let q: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap();
        assert_eq!(q["oe"], "3E8");
        assert!(
            s.check(token, None, Some(&q["oh"]), Some(&q["oe"]), 999.5)
                .is_ok()
        );
        assert_eq!(
            s.check(token, None, Some(&q["oh"]), Some(&q["oe"]), 1000.0),
            Err(CheckError::Expired)
        );
    }

    #[test]
    fn personalised_jpeg_decodes_with_right_size() {
        let base = encode_scene(256, 128, true);
        let jpg = personalise(&base, 42);
        assert!(jpg.windows(15).any(|w| w == b"mlysim image 42"));
        let img = image::load_from_memory_with_format(&jpg, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (256, 128));
    }
}
