# Shared by the lab scripts: install what they use on a fresh Debian machine.
#
#   ensure_commands CMD:PACKAGE ...   installs PACKAGE for each missing CMD
#                                     (CMD may be an absolute path)
ensure_commands() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing ${missing[*]}: run as root to install them, or install them yourself" >&2
    return 1
  fi
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
