//! The XMP APP1 payload for panoramas: Google's GPano tags with the size of
//! the file actually downloaded. Pure: builds and edits text, no I/O.

use super::jpeg::XMP_HEADER;

/// The toolkit name that marks an XMP packet as written by mlyexport, so a
/// later run may replace it.
const TOOLKIT: &str = "mlyexport";
const GPANO_NS: &str = "http://ns.google.com/photos/1.0/panorama/";

/// GPano values for an equirectangular panorama of `width` x `height` pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pano {
    pub width: u32,
    pub height: u32,
    /// Compass angle of the image centre, degrees clockwise from true north.
    pub heading: Option<f64>,
}

impl Pano {
    /// The full sphere is 2:1; a file less tall than half its width is taken
    /// as a band cropped symmetrically around the horizon.
    fn description(&self) -> String {
        let full_h = self.height.max(self.width / 2);
        let top = (full_h - self.height) / 2;
        let mut d = format!(
            "<rdf:Description rdf:about=\"\" xmlns:GPano=\"{GPANO_NS}\"\n   \
             GPano:UsePanoramaViewer=\"True\"\n   \
             GPano:ProjectionType=\"equirectangular\"\n   \
             GPano:FullPanoWidthPixels=\"{w}\"\n   \
             GPano:FullPanoHeightPixels=\"{full_h}\"\n   \
             GPano:CroppedAreaImageWidthPixels=\"{w}\"\n   \
             GPano:CroppedAreaImageHeightPixels=\"{h}\"\n   \
             GPano:CroppedAreaLeftPixels=\"0\"\n   \
             GPano:CroppedAreaTopPixels=\"{top}\"",
            w = self.width,
            h = self.height,
        );
        if let Some(heading) = self.heading {
            d.push_str(&format!("\n   GPano:PoseHeadingDegrees=\"{heading:.2}\""));
        }
        d.push_str("/>\n");
        d
    }

    /// A complete XMP APP1 payload (header included) owned by mlyexport.
    pub(super) fn payload(&self) -> Vec<u8> {
        let packet = format!(
            "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n\
             <x:xmpmeta xmlns:x=\"adobe:ns:meta/\" x:xmptk=\"{TOOLKIT}\">\n\
             <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n\
             {}\
             </rdf:RDF>\n\
             </x:xmpmeta>\n\
             <?xpacket end=\"w\"?>",
            self.description()
        );
        let mut v = XMP_HEADER.to_vec();
        v.extend_from_slice(packet.as_bytes());
        v
    }
}

/// What to do with an existing XMP payload (header included) for a panorama.
#[derive(Debug, PartialEq)]
pub(crate) enum Existing {
    /// Written by mlyexport: replace it with a fresh packet.
    Ours,
    /// Someone else's packet that already has GPano tags: keep it as it is.
    ForeignWithGpano,
    /// Someone else's packet without GPano tags: this payload adds ours.
    ForeignMerged(Vec<u8>),
    /// Someone else's packet we cannot safely edit: keep it as it is.
    ForeignUnmergeable,
}

/// Decides how to treat an existing XMP payload.
pub(crate) fn classify(existing: &[u8], pano: &Pano) -> Existing {
    let Ok(text) = std::str::from_utf8(&existing[XMP_HEADER.len()..]) else {
        return Existing::ForeignUnmergeable;
    };
    if text.contains(&format!("x:xmptk=\"{TOOLKIT}\"")) {
        return Existing::Ours;
    }
    if text.contains(GPANO_NS) {
        return Existing::ForeignWithGpano;
    }
    match text.find("</rdf:RDF>") {
        Some(at) => {
            let mut v = XMP_HEADER.to_vec();
            v.extend_from_slice(&text.as_bytes()[..at]);
            v.extend_from_slice(pano.description().as_bytes());
            v.extend_from_slice(&text.as_bytes()[at..]);
            Existing::ForeignMerged(v)
        }
        None => Existing::ForeignUnmergeable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PANO: Pano = Pano {
        width: 2048,
        height: 1024,
        heading: Some(12.5),
    };

    #[test]
    fn payload_names_the_downloaded_size() {
        let p = PANO.payload();
        assert!(p.starts_with(XMP_HEADER));
        let t = String::from_utf8(p[XMP_HEADER.len()..].to_vec()).unwrap();
        assert!(t.contains("GPano:FullPanoWidthPixels=\"2048\""));
        assert!(t.contains("GPano:CroppedAreaImageHeightPixels=\"1024\""));
        assert!(t.contains("GPano:CroppedAreaTopPixels=\"0\""));
        assert!(t.contains("GPano:PoseHeadingDegrees=\"12.50\""));
        assert_eq!(classify(&p, &PANO), Existing::Ours);
    }

    #[test]
    fn a_band_is_centred_on_the_horizon() {
        let band = Pano {
            width: 2000,
            height: 600,
            heading: None,
        };
        let t = String::from_utf8(band.payload()).unwrap();
        assert!(t.contains("GPano:FullPanoHeightPixels=\"1000\""));
        assert!(t.contains("GPano:CroppedAreaTopPixels=\"200\""));
        assert!(!t.contains("PoseHeading"));
    }

    #[test]
    fn foreign_packets_are_merged_or_kept() {
        let mut foreign = XMP_HEADER.to_vec();
        foreign.extend_from_slice(b"<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF><rdf:Description dc:x=\"1\"/></rdf:RDF></x:xmpmeta>");
        let Existing::ForeignMerged(merged) = classify(&foreign, &PANO) else {
            panic!("not merged")
        };
        let t = String::from_utf8(merged.clone()).unwrap();
        assert!(t.contains("dc:x=\"1\"") && t.contains("GPano:ProjectionType"));
        assert_eq!(classify(&merged, &PANO), Existing::ForeignWithGpano);
        let mut odd = XMP_HEADER.to_vec();
        odd.extend_from_slice(b"<nothing/>");
        assert_eq!(classify(&odd, &PANO), Existing::ForeignUnmergeable);
    }
}
