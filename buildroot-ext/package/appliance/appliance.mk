################################################################################
#
# appliance
#
################################################################################

# The package is the Cargo workspace that contains this br2-external
# tree: build it from the working copy (local site method).
APPLIANCE_SITE = $(BR2_EXTERNAL_SIP_LB_PATH)/..
APPLIANCE_SITE_METHOD = local
APPLIANCE_VERSION = $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' \
	$(APPLIANCE_SITE)/Cargo.toml | head -n 1)
APPLIANCE_LICENSE = Apache-2.0
APPLIANCE_LICENSE_FILES = LICENSE
# Workspace member holding the multi-call binary.
APPLIANCE_SUBDIR = appliance

# Keep host build trees out of the copy: cargo's target/, the dev image
# build directory and fuzzing artefacts can weigh gigabytes.
APPLIANCE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude=/target --exclude=/build --exclude=/fuzz/target \
	--exclude=/fuzz/corpus --exclude=/fuzz/artifacts

# The cargo infrastructure vendors crates in its download post-process,
# which only runs for downloaded archives, then builds with --offline
# --locked. A local package is rsync'ed, never downloaded, so vendor the
# crates here, once host-rustc is available (it is a dependency of the
# configure step, not of the rsync step). This step needs network access
# to crates.io unless BR_CARGO_HOME (in DL_DIR) already caches them.
# --locked makes cargo refuse a Cargo.lock that does not match the
# manifests, and cargo checks every crate against the sha256 recorded in
# Cargo.lock, which plays the role of a .hash file for the crates.
define APPLIANCE_CARGO_VENDOR
	mkdir -p $(@D)/.cargo $(BR_CARGO_HOME)
	cd $(@D) && \
	$(TARGET_MAKE_ENV) $(PKG_COMMON_CARGO_ENV) \
		flock $(BR_CARGO_HOME)/.br-lock \
		cargo vendor --locked --versioned-dirs \
			--manifest-path Cargo.toml VENDOR \
			> $(@D)/.cargo/config.toml
endef
APPLIANCE_PRE_CONFIGURE_HOOKS += APPLIANCE_CARGO_VENDOR
HOST_APPLIANCE_PRE_CONFIGURE_HOOKS += APPLIANCE_CARGO_VENDOR

# cargo install would put the binary in /usr/bin; the inittab and the
# docs expect /usr/sbin/appliance.
define APPLIANCE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/appliance \
		$(TARGET_DIR)/usr/sbin/appliance
endef

# The same binary for the build host: post-image.sh lays out the A/B boot disk and signs
# the update bundle with `appliance firmware`.
define HOST_APPLIANCE_INSTALL_CMDS
	$(INSTALL) -D -m 0755 $(@D)/target/release/appliance $(HOST_DIR)/bin/appliance
endef

$(eval $(cargo-package))
$(eval $(host-cargo-package))
