# Shell helpers the bench scripts source (`. "$REPO/benches/lib.sh"`).

# `admin_listen = "off"` for a binary that has the admin listener (its
# fixed default port may be taken by another Herald); nothing for older
# ones, which refuse the key.
admin_off() {
  local p
  p=$(mktemp -d)
  mkdir "$p/c"
  printf 'content_dir = "%s"\nadmin_listen = "off"\n' "$p/c" >"$p/probe.toml"
  if "$HERALD" --config "$p/probe.toml" check >/dev/null 2>&1; then
    echo 'admin_listen = "off"'
  fi
  rm -rf "$p"
}
