# Node helper: runs in a short-lived container on the node, with the kubelet's pidns
# configuration directory mounted at $PIDNS_KUBELET_DIR (default /host/kubelet), and the directory
# of the kubelet's KubeletConfiguration read-only at /host/kubelet-config.
#   read           print the kubelet version, the managed drop-in, the kubelet's status (written by
#                  the kubelet unit) and its KubeletConfiguration
#   write          replace the drop-in with $PIDNS_DROPIN atomically, keep the previous one,
#                  and request a kubelet restart; does nothing when the content is the same.
#                  A compare-and-set when asked: with $PIDNS_EXPECT_KUBELET, the kubelet version
#                  must be that one; with $PIDNS_EXPECT_ARGS, the drop-in's arguments must be those
#                  (or already $PIDNS_NEW_ARGS). Otherwise nothing is written and the status is
#                  "conflict", with what the node has.
set -eu
dir="${PIDNS_KUBELET_DIR:-/host/kubelet}"
dropin="$dir/20-pidns.conf"

section() { echo "==> $1"; }
kubelet_version() { cat "$dir/kubelet-version" 2>/dev/null || true; }
current_args() {
  [ -f "$dropin" ] || return 0
  sed -n 's/^[[:space:]]*Environment="KUBELET_PIDNS_ARGS=\(.*\)"[[:space:]]*$/\1/p' "$dropin"
}
show_node() {
  section kubelet-version
  kubelet_version
  echo
  section dropin
  cat "$dropin" 2>/dev/null || true
  echo
}
show_kubelet() {
  section kubelet-status
  cat "$dir/kubelet-status" 2>/dev/null || true
  echo
  section kubelet-config
  cat "/host/kubelet-config/${PIDNS_KUBELET_CONFIG_NAME:-config.yaml}" 2>/dev/null || true
  echo
}

case "${1:-read}" in
  read)
    show_node
    show_kubelet
    section status
    echo ok
    ;;
  write)
    conflict=""
    if [ -n "${PIDNS_EXPECT_KUBELET+x}" ]; then
      [ "$(kubelet_version | tr -d '[:space:]')" = "$PIDNS_EXPECT_KUBELET" ] || conflict=yes
    fi
    if [ -n "${PIDNS_EXPECT_ARGS+x}" ]; then
      args="$(current_args)"
      [ "$args" = "$PIDNS_EXPECT_ARGS" ] || [ "$args" = "${PIDNS_NEW_ARGS:-}" ] || conflict=yes
    fi
    if [ -n "$conflict" ]; then
      show_node
      section status
      echo conflict
      exit 0
    fi
    section kubelet-version
    kubelet_version
    echo
    tmp="$dir/.20-pidns.conf.$$"
    printf '%s' "$PIDNS_DROPIN" > "$tmp"
    if [ -f "$dropin" ] && cmp -s "$tmp" "$dropin"; then
      rm -f "$tmp"
      section status
      echo unchanged
      exit 0
    fi
    section previous
    cat "$dropin" 2>/dev/null || true
    echo
    if [ -f "$dropin" ]; then cp -p "$dropin" "$dropin.prev"; fi
    mv -f "$tmp" "$dropin"
    date +%s > "$dir/.restart.$$"
    mv -f "$dir/.restart.$$" "$dir/restart-requested"
    section status
    echo changed
    ;;
  *)
    echo "usage: helper read|write" >&2
    exit 2
    ;;
esac
