#!/bin/sh
# Throwaway certificates for the TLS tests, generated at run time so no key
# is ever committed. Usage: make.sh DIR [ec|rsa]
#   ca.pem / ca.key          a test CA
#   server.pem / server.key  signed by the CA, SAN localhost, 127.0.0.1, ::1
#   wrong.pem / wrong.key    signed by the CA, SAN wrong.example only
#   self.pem / self.key      self-signed, SAN localhost, 127.0.0.1 (trusted
#                            by nobody, otherwise valid for localhost)
# Keys are EC P-256 (quick to generate), or RSA 2048 with `rsa` (the
# benchmarks compare the two). Validity is two days.
set -eu
dir=${1:?usage: make.sh DIR [ec|rsa]}
kind=${2:-ec}
mkdir -p "$dir"
cd "$dir"
umask 077

case $kind in
  ec) newkey="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes" ;;
  rsa) newkey="-newkey rsa:2048 -nodes" ;;
  *) echo "make.sh: key type must be ec or rsa, not $kind" >&2; exit 2 ;;
esac

openssl req -x509 $newkey -keyout ca.key -out ca.pem -days 2 \
  -subj "/CN=duplex test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

# leaf NAME SAN: a CA-signed server certificate.
leaf() {
  openssl req $newkey -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
  cat > "$1.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$3
EOF
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -CAserial ca.srl -days 2 -extfile "$1.ext" -out "$1.pem"
  rm -f "$1.csr" "$1.ext"
}

leaf server localhost "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf wrong wrong.example "DNS:wrong.example"

openssl req -x509 $newkey -keyout self.key -out self.pem -days 2 \
  -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"

rm -f ca.srl
# Every expected file exists and is a certificate; fail loudly otherwise.
for c in ca server wrong self; do
  test -s "$c.key"
  openssl x509 -in "$c.pem" -noout
done
