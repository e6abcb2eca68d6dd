#!/usr/bin/env python3
"""Static checks of the Buildroot external tree (buildroot-ext/ + board/).

usage: check_tree.py [--root REPO] [--kconfig-dir DIR]

No network, no Buildroot checkout needed. Checks:
  * required files exist (external tree, package, scripts, per-board files);
  * every path a defconfig references through $(BR2_EXTERNAL_SIP_LB_PATH)
    exists, and no defconfig uses an absolute or Buildroot-relative path;
  * every defconfig forces hash checks and pins a 6.1 kernel whose tarball
    hash (and the linux-headers one) is in its BR2_GLOBAL_PATCH_DIR;
  * every CONFIG_ symbol of the kernel fragments and base configs is
    defined by the Linux 6.1 Kconfig files (--kconfig-dir);
  * release hardening: no overlay or post-build script of a defconfig ships a
    shell on a serial port (the dev image's test shell), Magic SysRq is off in
    every release kernel, and every board GRUB menu is locked (superuser with a
    PBKDF2 password, only the default entry --unrestricted);
  * the rules of Buildroot's utils/check-package for .mk, Config.in, .hash,
    defconfig, shell and python files (re-implemented here), plus
    shellcheck/flake8 when installed.
Prints one line per failure and a summary "buildroot-check: N passed, M failed".
Exit status 1 if anything failed.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

EXT_VAR = "$(BR2_EXTERNAL_SIP_LB_PATH)"


class Checker:
    def __init__(self, root):
        self.root = root
        self.ext = os.path.join(root, "buildroot-ext")
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: " + what)
        return cond

    def skip(self, why):
        # In CI (CI=true) or with APPLIANCE_STRICT=1 a check that cannot run fails.
        if os.environ.get("CI") in ("true", "1") or os.environ.get("APPLIANCE_STRICT") in ("1", "true"):
            self.failed += 1
            print("FAIL: cannot check (a skip is a failure in CI): " + why)
            return
        self.skipped += 1
        sys.stderr.write("SKIPPED (FAILS in CI): {}\n".format(why))

    def rel(self, path):
        return os.path.relpath(path, self.root)

    # ---------------------------------------------------------- defconfigs
    def defconfigs(self):
        d = os.path.join(self.ext, "configs")
        if not os.path.isdir(d):
            return []
        return sorted(os.path.join(d, f) for f in os.listdir(d)
                      if f.endswith("_defconfig"))

    @staticmethod
    def parse_defconfig(path):
        vals = {}
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r'^(BR2_\w+)=(.*)$', line.rstrip("\n"))
                if m:
                    v = m.group(2)
                    if v.startswith('"') and v.endswith('"'):
                        v = v[1:-1]
                    vals[m.group(1)] = v
        return vals

    def expand(self, token):
        return token.replace(EXT_VAR, self.ext)

    def check_required(self):
        for f in ["external.desc", "Config.in", "external.mk", "README.md",
                  "package/appliance/Config.in",
                  "package/appliance/appliance.mk",
                  "scripts/post-build.sh", "scripts/post-image.sh",
                  "scripts/linux-check-dotconfig.py"]:
            self.ok(os.path.isfile(os.path.join(self.ext, f)),
                    "missing buildroot-ext/" + f)
        for f in ["scripts/post-build.sh", "scripts/post-image.sh",
                  "scripts/linux-check-dotconfig.py"]:
            p = os.path.join(self.ext, f)
            if os.path.isfile(p):
                self.ok(os.access(p, os.X_OK), "buildroot-ext/{} is not executable".format(f))
        names = [os.path.basename(p) for p in self.defconfigs()]
        for want in ["sip_lb_qemu_x86_64_defconfig", "sip_lb_apu2_defconfig",
                     "sip_lb_qemu_aarch64_virt_defconfig"]:
            self.ok(want in names, "missing buildroot-ext/configs/" + want)
        desc = os.path.join(self.ext, "external.desc")
        if os.path.isfile(desc):
            with open(desc, encoding="utf-8") as f:
                text = f.read()
            self.ok(re.search(r"^name: SIP_LB$", text, re.M) is not None,
                    "external.desc must say 'name: SIP_LB' (the defconfigs use $(BR2_EXTERNAL_SIP_LB_PATH))")
        cfg = os.path.join(self.ext, "Config.in")
        if os.path.isfile(cfg):
            with open(cfg, encoding="utf-8") as f:
                for m in re.finditer(r'^source "\$BR2_EXTERNAL_SIP_LB_PATH/(\S+)"', f.read(), re.M):
                    self.ok(os.path.isfile(os.path.join(self.ext, m.group(1))),
                            "Config.in sources missing file buildroot-ext/" + m.group(1))
        mk = os.path.join(self.ext, "package/appliance/appliance.mk")
        if os.path.isfile(mk):
            with open(mk, encoding="utf-8") as f:
                text = f.read()
            for pat, what in [(r"^\$\(eval \$\(cargo-package\)\)$", "uses $(eval $(cargo-package))"),
                              (r"^APPLIANCE_SITE_METHOD = local$", "sets APPLIANCE_SITE_METHOD = local"),
                              (r"^APPLIANCE_SUBDIR = appliance$", "sets APPLIANCE_SUBDIR = appliance"),
                              (r"cargo vendor --locked", "vendors crates with cargo vendor --locked"),
                              (r"^APPLIANCE_LICENSE_FILES = LICENSE$", "sets APPLIANCE_LICENSE_FILES = LICENSE")]:
                self.ok(re.search(pat, text, re.M) is not None, "appliance.mk " + what)
        self.ok(os.path.isfile(os.path.join(self.root, "LICENSE")),
                "LICENSE missing at the workspace root (APPLIANCE_LICENSE_FILES names it)")
        self.ok(os.path.isdir(os.path.join(self.root, "appliance")) and
                os.path.isfile(os.path.join(self.root, "Cargo.lock")),
                "APPLIANCE_SITE ($(BR2_EXTERNAL_SIP_LB_PATH)/..) must hold the workspace with Cargo.lock and appliance/")

    def check_defconfig(self, path):
        name = os.path.basename(path)
        vals = self.parse_defconfig(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        self.ok("BR2_DOWNLOAD_FORCE_CHECK_HASHES=y\n" in text,
                "{}: missing BR2_DOWNLOAD_FORCE_CHECK_HASHES=y".format(name))
        # Every path-like value must go through $(BR2_EXTERNAL_SIP_LB_PATH).
        for key, val in vals.items():
            for tok in val.split():
                if EXT_VAR in tok:
                    p = self.expand(tok)
                    self.ok(os.path.exists(p), "{}: {} references {} which does not exist".format(
                        name, key, self.rel(os.path.normpath(p))))
                elif tok.startswith("/") or re.match(r"^(board|package|configs)/", tok):
                    self.ok(False, "{}: {} uses path {} instead of {}/...".format(name, key, tok, EXT_VAR))
        for key in ["BR2_ROOTFS_OVERLAY", "BR2_GLOBAL_PATCH_DIR",
                    "BR2_ROOTFS_POST_BUILD_SCRIPT", "BR2_ROOTFS_POST_IMAGE_SCRIPT",
                    "BR2_ROOTFS_POST_SCRIPT_ARGS", "BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE",
                    "BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"]:
            self.ok(EXT_VAR in vals.get(key, ""), "{}: {} must be set with {}".format(name, key, EXT_VAR))
        frags = [self.expand(t) for t in vals.get("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES", "").split()]
        self.ok(any(os.path.normpath(f) == os.path.join(self.root, "board/common/linux.fragment")
                    for f in frags),
                "{}: kernel fragments must include the shared board/common/linux.fragment".format(name))
        self.ok(vals.get("BR2_PACKAGE_APPLIANCE") == "y", "{}: BR2_PACKAGE_APPLIANCE=y missing".format(name))
        self.ok(vals.get("BR2_TARGET_ROOTFS_SQUASHFS") == "y", "{}: root must be squashfs".format(name))
        self.ok("# BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW is not set" in text,
                "{}: root must stay read-only (BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW unset)".format(name))
        self.ok("BR2_INIT_SYSTEMD=y" not in text and "BR2_INIT_SYSV=y" not in text,
                "{}: init must be BusyBox init".format(name))
        self.ok(vals.get("BR2_PACKAGE_HOST_GENIMAGE") == "y", "{}: BR2_PACKAGE_HOST_GENIMAGE=y missing".format(name))
        overlays = [os.path.normpath(self.expand(t)) for t in vals.get("BR2_ROOTFS_OVERLAY", "").split()]
        self.ok(os.path.join(self.root, "rootfs-overlay") in overlays,
                "{}: BR2_ROOTFS_OVERLAY must include the shared rootfs-overlay".format(name))
        # Kernel pinned with a hash.
        ver = vals.get("BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE", "")
        self.ok(vals.get("BR2_LINUX_KERNEL_CUSTOM_VERSION") == "y" and re.match(r"^6\.1\.\d+$", ver),
                "{}: kernel must be pinned to a 6.1.x release (BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE={!r})".format(name, ver))
        self.ok(vals.get("BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_1") == "y",
                "{}: kernel headers series must be 6.1 (BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_1=y)".format(name))
        patchdirs = [self.expand(t) for t in vals.get("BR2_GLOBAL_PATCH_DIR", "").split()]
        for pkg in ["linux", "linux-headers"]:
            found = False
            for d in patchdirs:
                for cand in [os.path.join(d, pkg, ver, pkg + ".hash"), os.path.join(d, pkg, pkg + ".hash")]:
                    if os.path.isfile(cand):
                        with open(cand, encoding="utf-8") as f:
                            found = found or re.search(
                                r"^sha256  [0-9a-f]{64}  linux-" + re.escape(ver) + r"\.tar\.xz$",
                                f.read(), re.M) is not None
                        break
            self.ok(found, "{}: no sha256 for linux-{}.tar.xz in <BR2_GLOBAL_PATCH_DIR>/{}/{}.hash".format(
                name, ver, pkg, pkg))
        # Board directory: first post-script argument.
        args = vals.get("BR2_ROOTFS_POST_SCRIPT_ARGS", "").split()
        board = self.expand(args[0]) if args else ""
        if self.ok(os.path.isdir(board), "{}: first BR2_ROOTFS_POST_SCRIPT_ARGS word must be the board directory".format(name)):
            bname = os.path.basename(os.path.normpath(board))
            for f in ["genimage.cfg", "readme.txt", "linux.fragment", "rootfs-overlay/etc/appliance/board.toml"]:
                self.ok(os.path.isfile(os.path.join(board, f)), "{}: missing board/{}/{}".format(name, bname, f))
            self.ok(os.path.normpath(os.path.join(board, "linux.fragment")) in [os.path.normpath(f) for f in frags],
                    "{}: kernel fragments must include board/{}/linux.fragment".format(name, bname))
            self.ok(os.path.normpath(os.path.join(board, "rootfs-overlay")) in overlays,
                    "{}: BR2_ROOTFS_OVERLAY must include board/{}/rootfs-overlay".format(name, bname))
            readme = os.path.join(board, "readme.txt")
            if name.startswith("sip_lb_qemu") and os.path.isfile(readme):
                with open(readme, encoding="utf-8") as f:
                    text = f.read()
                self.ok(re.search(r"^\s*qemu-system-\S+ .*# " + re.escape(name) + "$", text, re.M) is not None,
                        "board/{}/readme.txt: no QEMU command line tagged '# {}'".format(bname, name))
            self.check_board_toml(os.path.join(board, "rootfs-overlay/etc/appliance/board.toml"), bname)
            self.check_genimage(os.path.join(board, "genimage.cfg"), bname, vals)

    # ------------------------------------------------ release hardening
    # Release images must not ship the dev image's unauthenticated root shell,
    # Magic SysRq, or an editable boot menu.
    SHELL_RE = re.compile(r"testshell|^[^#\n]*::(respawn|askfirst|once):[^\n]*"
                          r"(/bin/sh|/bin/ash|/bin/bash|getty|login\b|\bsh -c)", re.M)

    def check_release_hardening(self, path):
        name = os.path.basename(path)
        vals = self.parse_defconfig(path)
        # 1. No test shell in any overlay this defconfig copies, nor in its scripts.
        for tok in vals.get("BR2_ROOTFS_OVERLAY", "").split():
            top = os.path.normpath(self.expand(tok))
            for dirpath, _, fnames in os.walk(top):
                for fn in fnames:
                    f = os.path.join(dirpath, fn)
                    self.ok("testshell" not in fn,
                            "{}: overlay ships {} (a test shell: dev image only)".format(name, self.rel(f)))
                    with open(f, encoding="utf-8", errors="replace") as fh:
                        m = self.SHELL_RE.search(fh.read())
                    self.ok(m is None, "{}: {} would start a shell in a release image: {!r}".format(
                        name, self.rel(f), m.group(0) if m else ""))
        for key in ["BR2_ROOTFS_POST_BUILD_SCRIPT", "BR2_ROOTFS_POST_IMAGE_SCRIPT"]:
            for tok in vals.get(key, "").split():
                f = self.expand(tok)
                if os.path.isfile(f):
                    with open(f, encoding="utf-8", errors="replace") as fh:
                        text = fh.read()
                    self.ok(re.search(r"testshell|dev-overlay|/bin/sh\b.*inittab|ttyS1::", text) is None,
                            "{}: {} adds a test shell to the release image".format(name, self.rel(f)))
        # 2. Magic SysRq off: the last word of base config + fragments, in merge order.
        sysrq = "n"
        files = vals.get("BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE", "").split() + \
            vals.get("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES", "").split()
        for tok in files:
            f = self.expand(tok)
            if os.path.isfile(f):
                with open(f, encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        m = re.match(r"^(?:CONFIG_MAGIC_SYSRQ=(\w+)|# CONFIG_MAGIC_SYSRQ is not set)\s*$", line)
                        if m:
                            sysrq = m.group(1) or "n"
        self.ok(sysrq == "n", "{}: release kernel has CONFIG_MAGIC_SYSRQ={} (a BREAK on the console could "
                "reboot the box): add '# CONFIG_MAGIC_SYSRQ is not set' to board/common/linux-buildroot.fragment"
                .format(name, sysrq))
        # 3. A board bootloader menu is locked.
        args = vals.get("BR2_ROOTFS_POST_SCRIPT_ARGS", "").split()
        grub = os.path.join(self.expand(args[0]), "grub.cfg") if args else ""
        if grub and os.path.isfile(grub):
            self.check_grub_locked(grub, name, vals)

    def check_grub_locked(self, path, name, vals):
        rel = self.rel(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        su = re.search(r'^\s*set\s+superusers="?(\w+)"?\s*$', text, re.M)
        self.ok(su is not None, "{}: no 'set superusers=...': the GRUB menu can be edited by anyone at the console".format(rel))
        pw = re.search(r"^\s*password_pbkdf2\s+(\w+)\s+(\S+)\s*$", text, re.M)
        self.ok(pw is not None and su is not None and pw.group(1) == su.group(1),
                "{}: the superuser needs a 'password_pbkdf2 <user> <hash>' line".format(rel))
        if pw:
            self.ok(re.match(r"^grub\.pbkdf2\.sha512\.\d+\.[0-9A-F]+\.[0-9A-F]+$|^@SIP_LB_GRUB_PASSWORD_PBKDF2@$",
                             pw.group(2)) is not None,
                    "{}: password must be a grub-mkpasswd-pbkdf2 hash or the @SIP_LB_GRUB_PASSWORD_PBKDF2@ placeholder".format(rel))
            if pw.group(2).startswith("@"):
                script = self.expand(vals.get("BR2_ROOTFS_POST_BUILD_SCRIPT", ""))
                text_pb = open(script, encoding="utf-8").read() if os.path.isfile(script) else ""
                self.ok("SIP_LB_GRUB_PASSWORD_PBKDF2:-" in text_pb and "die" in text_pb,
                        "{}: {} must refuse to build while the GRUB password placeholder is unset".format(
                            name, self.rel(script) if script else "post-build script"))
        self.ok(re.search(r"^\s*password\s", text, re.M) is None,
                "{}: plain-text 'password' line: use password_pbkdf2".format(rel))
        entries = re.findall(r"^\s*menuentry\s+(.*?)\s*\{", text, re.M)
        if not entries:
            # The A/B grub.cfg has no menu: it boots the chosen slot directly; only the
            # superuser may reach a command line if that fails.
            self.ok(re.search(r"^\s*boot\s*$", text, re.M) is not None,
                    "{}: no menu entry and no 'boot' command: the box would not boot unattended".format(rel))
        dm = re.search(r'^\s*set\s+default="?(\d+)"?\s*$', text, re.M)
        default = int(dm.group(1)) if dm else 0
        self.ok(not entries or len(entries) > default, "{}: default entry {} does not exist".format(rel, default))
        for i, e in enumerate(entries):
            unres = "--unrestricted" in e.split()
            if i == default:
                self.ok(unres, "{}: the default entry must be --unrestricted (the box must boot unattended)".format(rel))
            else:
                self.ok(not unres, "{}: menu entry {} is --unrestricted: only the default entry may be".format(rel, i))
        mods = vals.get("BR2_TARGET_GRUB2_BUILTIN_MODULES_PC", "").split() + \
            vals.get("BR2_TARGET_GRUB2_BUILTIN_MODULES_EFI", "").split()
        self.ok("password_pbkdf2" in mods,
                "{}: BR2_TARGET_GRUB2_BUILTIN_MODULES_* must include password_pbkdf2 for the locked menu".format(name))

    def check_board_toml(self, path, bname):
        if not os.path.isfile(path):
            return
        try:
            import tomllib
        except ImportError:
            self.skip("python3 < 3.11 has no tomllib: board/{} board.toml not parsed".format(bname))
            return
        try:
            with open(path, "rb") as f:
                t = tomllib.load(f)
        except (OSError, ValueError) as e:
            self.ok(False, "board/{}/board.toml: {}".format(bname, e))
            return
        # Same flat format the daemon's config::board::Board reads.
        self.ok(t.get("name") == bname, "board/{}/board.toml: name = {!r}, expected {!r}".format(bname, t.get("name"), bname))
        store = str(t.get("store", ""))
        self.ok(re.match(r"^(file|mtd):/dev/", store) is not None,
                "board/{}/board.toml: store must be file:/dev/... or mtd:/dev/...".format(bname))
        self.ok(str(t.get("watchdog", "")).startswith("/dev/watchdog"),
                "board/{}/board.toml: watchdog device missing".format(bname))
        leds = t.get("leds", [])
        roles = {l.get("role") for l in leds if isinstance(l, dict) and l.get("name")}
        self.ok(isinstance(leds, list) and {"status", "pool"} <= roles,
                "board/{}/board.toml: [[leds]] must map at least the status and pool roles".format(bname))

    def check_genimage(self, path, bname, vals):
        if not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as f:
            text = f.read()
        produced = set(re.findall(r"^image\s+(\S+)\s*\{", text, re.M))
        # Inputs that Buildroot puts in BINARIES_DIR for this defconfig.
        inputs = set(produced)
        if vals.get("BR2_TARGET_ROOTFS_SQUASHFS") == "y":
            inputs.add("rootfs.squashfs")
        if vals.get("BR2_TARGET_GRUB2") == "y":
            inputs.update(["grub.img", "boot.img"])
            # post-build.sh (locked grub.cfg), post-image.sh (first GRUB environment).
            inputs.update(["grub.cfg", "grubenv"])
        if vals.get("BR2_TARGET_UBOOT") == "y":
            # post-image.sh: both U-Boot environment copies + boot.scr.
            inputs.add("boot-env.img")
        # post-image.sh: slot A (rootfs + kernel, `appliance firmware slot-image`).
        if vals.get("BR2_PACKAGE_HOST_APPLIANCE") == "y":
            inputs.add("slot-a.img")
        for img in re.findall(r'^\s*image\s*=\s*"([^"]+)"', text, re.M):
            self.ok(img in inputs, "board/{}/genimage.cfg: input image {} is neither built by Buildroot nor by this file".format(bname, img))
        for ft in re.findall(r'^\s*flashtype\s*=\s*"([^"]+)"', text, re.M):
            self.ok(re.search(r"^flash\s+" + re.escape(ft) + r"\s*\{", text, re.M) is not None,
                    "board/{}/genimage.cfg: flashtype {} not defined".format(bname, ft))
        self.ok(text.count("{") == text.count("}"), "board/{}/genimage.cfg: unbalanced braces".format(bname))

    # ------------------------------------------------------ kernel symbols
    def check_kernel_symbols(self, kconfig_dir):
        files = set()
        for p in self.defconfigs():
            v = self.parse_defconfig(p)
            for key in ["BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES", "BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE"]:
                for t in v.get(key, "").split():
                    f = os.path.normpath(self.expand(t))
                    if os.path.isfile(f):
                        files.add(f)
        if not kconfig_dir:
            self.skip("no Linux 6.1 Kconfig tree (install linux-source-6.1): fragment symbols not checked")
            return
        defined = set()
        for dirpath, _, fnames in os.walk(kconfig_dir):
            for fn in fnames:
                if fn.startswith("Kconfig"):
                    with open(os.path.join(dirpath, fn), encoding="utf-8", errors="replace") as f:
                        defined.update(re.findall(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$", f.read(), re.M))
        if not self.ok(len(defined) > 10000, "Kconfig tree {} defines only {} symbols".format(kconfig_dir, len(defined))):
            return
        for f in sorted(files):
            with open(f, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    line = line.strip()
                    m = re.match(r"^(?:# )?CONFIG_([A-Za-z0-9_]+)(?:=.*| is not set)$", line)
                    if m:
                        self.ok(m.group(1) in defined, "{}:{}: CONFIG_{} is not defined in Linux 6.1 Kconfig".format(
                            self.rel(f), lineno, m.group(1)))
                    elif line and not line.startswith("#"):
                        self.ok(False, "{}:{}: not a kernel config line: {}".format(self.rel(f), lineno, line))

    # --------------------------------------------- check-package style rules
    def our_files(self):
        out = []
        for top in ["buildroot-ext", "board"]:
            for dirpath, dirnames, fnames in os.walk(os.path.join(self.root, top)):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                out.extend(os.path.join(dirpath, f) for f in fnames)
        return sorted(out)

    def check_style(self):
        for path in self.our_files():
            rel = self.rel(path)
            base = os.path.basename(path)
            kind = None
            if re.search(r"Config\.\S*$", base):
                kind = "config"
            elif re.search(r"(^|/)configs/[^/]+_defconfig$", rel):
                kind = "defconfig"
            elif base.endswith(".hash"):
                kind = "hash"
            elif base.endswith(".mk") and not (base == "external.mk" and rel.startswith("buildroot-ext/")):
                kind = "mk"
            try:
                with open(path, encoding="utf-8") as f:
                    lines = f.readlines()
            except UnicodeDecodeError:
                self.ok(False, "{}: not UTF-8 text".format(rel))
                continue
            except OSError as e:
                self.ok(False, "{}: {}".format(rel, e))
                continue
            first = lines[0] if lines else ""
            is_sh = first.startswith("#!") and re.search(r"\b(sh|bash)\b", first)
            is_py = first.startswith("#!") and "python" in first
            if is_py and kind is None:
                # check-package runs only flake8 on python scripts.
                self.external_tool(["flake8", path], rel)
                continue
            # Every other file (board text files too): whitespace hygiene.
            self.generic_rules(rel, lines)
            if kind in ("config", "hash", "mk"):
                self.ok(not os.access(path, os.X_OK), "{}: this file does not need to be executable".format(rel))
                for i, l in enumerate(lines, 1):
                    self.ok(all(ord(c) < 128 for c in l), "{}:{}: line contains UTF-8 characters".format(rel, i))
            if kind == "config":
                self.config_rules(rel, lines)
            elif kind == "hash":
                self.hash_rules(rel, lines)
            elif kind == "mk":
                self.mk_rules(rel, lines)
            elif kind == "defconfig":
                self.ok("BR2_DOWNLOAD_FORCE_CHECK_HASHES=y\n" in lines, "{}:0: missing BR2_DOWNLOAD_FORCE_CHECK_HASHES".format(rel))
            elif is_sh:
                self.external_tool(["shellcheck", "--external-sources", path], rel)

    def generic_rules(self, rel, lines):
        bad = [i for i, l in enumerate(lines, 1) if l.rstrip("\r\n") != l.rstrip("\r\n").rstrip()]
        self.ok(not bad, "{}:{}: line contains trailing whitespace".format(rel, bad[0] if bad else 0))
        bad = [i for i in range(1, len(lines)) if lines[i].strip() == "" and lines[i - 1].strip() == ""]
        self.ok(not bad, "{}:{}: consecutive empty lines".format(rel, bad[0] + 1 if bad else 0))
        if lines:
            self.ok(lines[-1].strip() != "", "{}:{}: empty line at end of file".format(rel, len(lines)))
            self.ok(lines[-1].endswith("\n"), "{}:{}: missing newline at end of file".format(rel, len(lines)))

    def config_rules(self, rel, lines):
        not_indented = ["choice", "comment", "config", "endchoice", "endif", "endmenu",
                        "if", "menu", "menuconfig", "source"]
        indented = ["bool", "default", "depends", "help", "prompt", "select", "string"]
        order = {"bool": 1, "prompt": 1, "string": 1, "default": 2, "depends": 3, "select": 4, "help": 5}
        state, in_help, first_help = 0, False, False
        for i, text in enumerate(lines, 1):
            t = text.rstrip("\n")
            if t.strip() == "" or t.strip().startswith("#"):
                continue
            if in_help and t.startswith("\t  "):
                limit = 61 if first_help else 62
                first_ok = not first_help or not t[3:4].isspace()
                self.ok((len(t) - 3 <= limit and first_ok) or re.match(r"^(http|https|git)://\S*$", t.strip()),
                        "{}:{}: help text: <tab><2 spaces><62 chars>".format(rel, i))
                first_help = False
                continue
            word = t.split()[0]
            if word in not_indented:
                in_help, state = False, 0
                self.ok(t.startswith(word), "{}:{}: should not be indented".format(rel, i))
                continue
            if word in indented:
                self.ok(t.startswith("\t" + word), "{}:{}: should be indented with one tab".format(rel, i))
            if word in order:
                self.ok(order[word] >= state, "{}:{}: attributes order: type, default, depends on, select, help".format(rel, i))
                state = order[word]
            self.ok(t != "\tdefault n", "{}:{}: boolean symbols default to 'n'".format(rel, i))
            if t.strip() == "help":
                in_help, first_help = True, True

    def hash_rules(self, rel, lines):
        sizes = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}
        comment_seen = False
        for i, text in enumerate(lines, 1):
            t = text.rstrip("\n")
            if t.strip() == "":
                comment_seen = False  # each block needs its own origin comment
                continue
            if t.startswith("#"):
                comment_seen = comment_seen or re.match(r"^# (Locally (calculated|computed)|From \S+|.*sha\d+.*)", t) is not None
                continue
            fields = t.split()
            if not self.ok(len(fields) == 3, "{}:{}: expected three fields".format(rel, i)):
                continue
            htype, hexa, _ = fields
            self.ok(htype in sizes and re.match(r"^[0-9a-fA-F]{%d}$" % sizes.get(htype, 0), hexa) is not None,
                    "{}:{}: unexpected hash type or size".format(rel, i))
            self.ok(t == "{}  {}  {}".format(*fields), "{}:{}: separation does not match expectation (two spaces)".format(rel, i))
            self.ok(comment_seen, "{}:{}: hash not preceded by a '# Locally calculated' or '# From <url>' comment".format(rel, i))

    def mk_rules(self, rel, lines):
        pkg = os.path.splitext(os.path.basename(rel))[0]
        pkg_up = pkg.replace("-", "_").upper()
        if lines[:1] and lines[0].startswith("include "):
            pass
        else:
            want = ["#" * 80, "#", "# " + pkg, "#", "#" * 80, ""]
            for n, w in enumerate(want):
                got = lines[n].rstrip("\n") if n < len(lines) else None
                if n == 2:
                    self.ok(got is not None and got.startswith("# "), "{}:{}: package header".format(rel, n + 1))
                else:
                    self.ok(got == w, "{}:{}: should be {!r} (package header)".format(rel, n + 1, w))
        define = backslash = target = False
        allowed = re.compile(r"^(LINUX_POST_PATCH_HOOKS|TARGET_FINALIZE_HOOKS|BR_NO_CHECK_HASH_FOR)")
        for i, text in enumerate(lines, 1):
            t = text.rstrip("\n")
            self.ok(re.match(r"^\s*(else\s+|)(ifdef|ifndef)\s", t) is None,
                    "{}:{}: use ifeq ($(SYMBOL),y) instead of ifdef/ifndef".format(rel, i))
            self.ok(re.match(r"^.*(  |\t ?)\\$", t.rstrip()) is None, "{}:{}: use only one space before backslash".format(rel, i))
            self.ok(re.match(r"^[^#].*[^$]\${\w+}", t.rstrip()) is None, "{}:{}: use $() to delimit variables, not ${{}}".format(rel, i))
            m = re.match(r"^(define\s+)?([A-Z0-9_]+_[A-Z0-9_]+)", t)
            if m and not allowed.match(m.group(2)):
                self.ok(re.search(r"(HOST_|ROOTFS_)?{}_[A-Z0-9_]+".format(pkg_up), m.group(2)) is not None,
                        "{}:{}: possible typo, variable not properly prefixed: {} -> *{}_XXXX*".format(rel, i, m.group(2), pkg_up))
            if re.match(r"^\s*define\s", t):
                define = True
                continue
            if re.match(r"^\s*endef\s*$", t):
                define = False
                continue
            expect = define or backslash or target
            if not backslash and re.match(r"^\s*(ifdef|ifeq|ifndef|ifneq|elif|else|endif)\b", t):
                expect = False
            prev_backslash = backslash
            backslash = re.match(r"^[^#].*\\$", t) is not None
            if re.match(r"^[^# \t]+:\s", t):
                target = True
                continue
            if t.strip() == "":
                target = False
                self.ok(not prev_backslash, "{}:{}: remove trailing backslash".format(rel, i - 1))
                continue
            if define and re.match(r"^\s*#", t):
                continue
            if expect:
                self.ok(t.startswith("\t"), "{}:{}: expected indent with tabs".format(rel, i))
            else:
                self.ok(not t.startswith("\t"), "{}:{}: unexpected indent with tabs".format(rel, i))

    def external_tool(self, cmd, rel):
        if shutil.which(cmd[0]) is None:
            self.skip("{} not installed: {} not linted (apt-get install {})".format(cmd[0], rel, cmd[0]))
            return
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.ok(p.returncode == 0, "{}:0: run '{}' and fix the warnings\n{}".format(rel, cmd[0], p.stdout.rstrip()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")))
    ap.add_argument("--kconfig-dir", default="")
    a = ap.parse_args()
    c = Checker(os.path.abspath(a.root))
    c.check_required()
    for p in c.defconfigs():
        c.check_defconfig(p)
        c.check_release_hardening(p)
    c.check_kernel_symbols(a.kconfig_dir)
    c.check_style()
    print("buildroot-check: {} passed, {} failed{}".format(
        c.passed, c.failed, ", {} skipped".format(c.skipped) if c.skipped else ""))
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
