# ssh -b 127.0.0.1 to a local sshd on three addresses (key login, a command that holds).
. "$REPO/tests/compat/lib.sh"
version "$(ssh -V 2>&1 | cut -d' ' -f1)"
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$D/host" && ssh-keygen -q -t ed25519 -N '' -f "$D/user" || echo "ssh-keygen failed"
cp "$D/user.pub" "$D/authorized_keys"
cat >"$D/sshd_config" <<C
ListenAddress 127.0.0.2:22
ListenAddress 127.0.0.3:22
ListenAddress 127.0.0.4:22
HostKey $D/host
AuthorizedKeysFile $D/authorized_keys
PermitRootLogin yes
StrictModes no
UsePAM no
MaxStartups 200
PidFile $D/sshd.pid
C
$(command -v sshd || echo /usr/sbin/sshd) -f "$D/sshd_config" -E "$D/sshd.log" || { echo "sshd did not start"; cat "$D/sshd.log"; }
wait_port 127.0.0.4:22
many "^held$" '$RUN ssh -b 127.0.0.1 -i $D/user -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@$dst "sleep $DELAY; echo held"'
