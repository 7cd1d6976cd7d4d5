#!/bin/sh
# Install wasm-cni onto a node. Run by the DaemonSet's init container (deploy/daemonset.yaml)
# with the host's /opt/cni/bin, /etc/cni/net.d and /etc/wasm-cni mounted under /host; every
# path can be overridden through the environment (the tests point them at temp dirs).
#
#   WASM_CNI_SRC          what the image carries: bin/wasm-cni, bin/wasm-cni-compile,
#                         plugins/<type>.wasm                       (default /wasm-cni)
#   CNI_BIN_DIR           the host's plugin dir                      (default /host/opt/cni/bin)
#   CNI_CONF_DIR          the host's network config dir              (default /host/etc/cni/net.d)
#   WASM_CNI_ETC          the host's /etc/wasm-cni                   (default /host/etc/wasm-cni)
#   WASM_CNI_CONFIG       the mounted ConfigMap: policy.toml and the conflist (default /config)
#   WASM_CNI_CONFLIST     the conflist's file name                   (default 10-wasm-cni.conflist)
#   WASM_CNI_REPLACE      "true": take over plugin names held by other binaries (e.g. the
#                         reference bridge); default: keep them and skip that plugin
#
# Every file lands by rename(2) within its directory, so a runtime exec'ing a plugin at the
# same time sees the old file or the new one. The precompiled artifacts (.cwasm) are built
# here, on the node, with the wasm-cni-compile that is installed beside the runtime binary,
# so they match the node's CPU and the installed engine. Running it again changes nothing
# unless the image brings something new (then it upgrades in place). The policy and the
# conflist are written only when absent: once on the node they are the operator's.
set -eu

SRC=${WASM_CNI_SRC:-/wasm-cni}
BIN=${CNI_BIN_DIR:-/host/opt/cni/bin}
NETD=${CNI_CONF_DIR:-/host/etc/cni/net.d}
ETC=${WASM_CNI_ETC:-/host/etc/wasm-cni}
CONFIG=${WASM_CNI_CONFIG:-/config}
CONFLIST=${WASM_CNI_CONFLIST:-10-wasm-cni.conflist}
REPLACE=${WASM_CNI_REPLACE:-false}

log() { echo "wasm-cni install: $*" >&2; }

mkdir -p "$BIN" "$NETD" "$ETC"
STAGE="$BIN/.wasm-cni-stage.$$"
cleanup() { rm -rf "$STAGE"; rm -f "$BIN"/.wasm-cni-tmp.* "$NETD"/.wasm-cni-tmp.* "$ETC"/.wasm-cni-tmp.*; }
trap cleanup EXIT
trap 'exit 1' INT TERM
mkdir -p "$STAGE"

# put SRC DEST MODE: DEST becomes a copy of SRC atomically. Returns 1 (no change) when DEST
# already has that content and mode.
put() {
  if [ -f "$2" ] && [ ! -L "$2" ] && cmp -s "$1" "$2" \
    && [ "$(stat -c %a "$2")" = "$3" ]; then
    return 1
  fi
  tmp="$(dirname "$2")/.wasm-cni-tmp.$$.$(basename "$2")"
  cp "$1" "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$2"
  log "installed $2"
}

# put_if_absent SRC DEST: the operator's copy always wins.
put_if_absent() {
  if [ -e "$2" ] || [ -L "$2" ]; then
    log "keeping $2 (exists)"
    return 0
  fi
  if [ ! -f "$1" ]; then
    log "no $1 to install as $2"
    return 0
  fi
  put "$1" "$2" 644 || true
}

# Whether $1 is our link (-> wasm-cni).
ours() {
  [ -L "$1" ] && [ "$(readlink "$1")" = "wasm-cni" ]
}

engine_changed=false
for b in wasm-cni wasm-cni-compile; do
  if put "$SRC/bin/$b" "$BIN/$b" 755; then
    engine_changed=true
  fi
done

for module in "$SRC"/plugins/*.wasm; do
  [ -f "$module" ] || continue
  name=$(basename "$module" .wasm)
  link="$BIN/$name"
  if { [ -e "$link" ] || [ -L "$link" ]; } && ! ours "$link"; then
    if [ "$REPLACE" != "true" ]; then
      log "keeping $link (not a wasm-cni link; set WASM_CNI_REPLACE=true to take it over)"
      continue
    fi
    log "taking over $link"
  fi
  # Up to date: same module, and the installed host accepts its artifact as it is (this
  # engine, built from this module, intact), so a run interrupted between installing the
  # binaries and compiling recompiles next time. (Not `-nt`: busybox compares whole seconds.)
  if [ "$engine_changed" = false ] && cmp -s "$module" "$BIN/$name.wasm" \
    && "$BIN/wasm-cni" inspect "$BIN/$name.wasm" 2>/dev/null \
      | grep -q '"status": *"ok"'; then
    up_to_date=true
  else
    up_to_date=false
  fi
  if [ "$up_to_date" = false ]; then
    # Compile a staged copy with the installed compiler, then move module and artifact in
    # (module first: an exec in between finds a stale artifact and rebuilds it itself).
    cp "$module" "$STAGE/$name.wasm"
    chmod 644 "$STAGE/$name.wasm"
    "$BIN/wasm-cni-compile" "$STAGE/$name.wasm" >/dev/null
    chmod 644 "$STAGE/$name.cwasm"
    mv -f "$STAGE/$name.wasm" "$BIN/$name.wasm"
    mv -f "$STAGE/$name.cwasm" "$BIN/$name.cwasm"
    log "installed $BIN/$name.wasm and its artifact"
  fi
  if ! ours "$link"; then
    ln -s wasm-cni "$BIN/.wasm-cni-tmp.$$.$name"
    mv -fT "$BIN/.wasm-cni-tmp.$$.$name" "$link"
    log "linked $link -> wasm-cni"
  fi
done

put_if_absent "$CONFIG/policy.toml" "$ETC/policy.toml"
put_if_absent "$CONFIG/$CONFLIST" "$NETD/$CONFLIST"
log "done"
