# Node helper: runs in a short-lived container on the node, with the kubelet's pidns
# configuration directory mounted at $PIDNS_KUBELET_DIR (default /host/kubelet).
#   read           print the kubelet version and the managed drop-in
#   write          replace the drop-in with $PIDNS_DROPIN atomically, keep the previous one,
#                  and request a kubelet restart; does nothing when the content is the same
set -eu
dir="${PIDNS_KUBELET_DIR:-/host/kubelet}"
dropin="$dir/20-pidns.conf"

section() { echo "==> $1"; }

case "${1:-read}" in
  read)
    section kubelet-version
    cat "$dir/kubelet-version" 2>/dev/null || true
    echo
    section dropin
    cat "$dropin" 2>/dev/null || true
    echo
    section status
    echo ok
    ;;
  write)
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
