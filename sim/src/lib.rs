//! mlysim: a Mapillary API v4 simulator on loopback (see sim/README.md).
