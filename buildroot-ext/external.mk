include $(sort $(wildcard $(BR2_EXTERNAL_SIP_LB_PATH)/package/*/*.mk))

# Fail the build as soon as the kernel is configured if a symbol of the
# config fragments did not survive "make olddefconfig" (missing
# dependency, renamed symbol...), like Home Assistant OS's
# linux-check-dotconfig. Without this, IPVS or the SIP persistence
# engine could silently drop out of the image.
define SIP_LB_LINUX_CHECK_DOTCONFIG
	$(BR2_EXTERNAL_SIP_LB_PATH)/scripts/linux-check-dotconfig.py \
		$(LINUX_DIR)/$(LINUX_KCONFIG_DOTCONFIG) \
		$(LINUX_KCONFIG_FRAGMENT_FILES)
endef
LINUX_POST_CONFIGURE_HOOKS += SIP_LB_LINUX_CHECK_DOTCONFIG

# Same check on demand: make linux-check-dotconfig
.PHONY: linux-check-dotconfig
linux-check-dotconfig: linux-configure
	$(SIP_LB_LINUX_CHECK_DOTCONFIG)
