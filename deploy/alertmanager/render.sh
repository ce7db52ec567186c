#!/bin/sh
# Render alertmanager.yml with the secrets Alertmanager 0.25 cannot read from files itself
# (the webhook URL, the Telegram bot token and chat id), then run Alertmanager on the result.
#
#   render.sh [alertmanager arguments...]
#
# ALERTMANAGER_TEMPLATE  the template (default: alertmanager.yml beside this script)
# ALERTMANAGER_SECRETS   the secret directory (default /run/secrets/alertmanager)
# ALERTMANAGER_CONFIG    the rendered file (default /tmp/alertmanager/alertmanager.yml; mode 0600)
# ALERTMANAGER_BIN       what to run (default alertmanager); ALERTMANAGER_BIN=true renders only.
# A missing secret leaves its receiver unable to send (a warning here, errors in Alertmanager's
# log at each notification); a value that is not a plain URL, token or number is refused.
set -eu
here=$(dirname "$0")
template=${ALERTMANAGER_TEMPLATE:-$here/alertmanager.yml}
secrets=${ALERTMANAGER_SECRETS:-/run/secrets/alertmanager}
config=${ALERTMANAGER_CONFIG:-/tmp/alertmanager/alertmanager.yml}

secret() {  # secret NAME DEFAULT PATTERN-OF-REFUSED-CHARACTERS
  file="$secrets/$1"
  if [ -s "$file" ]; then
    value=$(head -n 1 "$file" | tr -d '\r')
  else
    echo "render.sh: no secret $1 in $secrets: that receiver cannot send" >&2
    value=$2
  fi
  case $value in
    *$3*) echo "render.sh: secret $1 holds characters it cannot hold; refusing to start" >&2; exit 2 ;;
  esac
  printf '%s' "$value"
}

url=$(secret webhook-url "http://127.0.0.1:9/webhook-url-not-configured" "[!A-Za-z0-9:/._~?=@%+,;-]")
token=$(secret telegram-bot-token "telegram-bot-token-not-configured" "[!A-Za-z0-9:_-]")
chat=$(secret telegram-chat-id "-1" "[!0-9-]")

umask 077
mkdir -p "$(dirname "$config")"
case $secrets in *[!A-Za-z0-9/._-]*) echo "render.sh: secret directory $secrets: use a plain path" >&2; exit 2 ;; esac
sed -e "s|__SECRETS__|$secrets|g" -e "s|__WEBHOOK_URL__|$url|" -e "s|__TELEGRAM_BOT_TOKEN__|$token|" -e "s|__TELEGRAM_CHAT_ID__|$chat|" \
  "$template" > "$config.tmp"
mv "$config.tmp" "$config"
exec "${ALERTMANAGER_BIN:-alertmanager}" --config.file="$config" "$@"
