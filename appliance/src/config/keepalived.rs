//! keepalived.conf importer (issue 11).
