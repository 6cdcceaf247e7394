# Start the cluster services of issue 7 on this machine: munged, a single-node Slurm
# (slurmctld + slurmd on localhost) and PostgreSQL 15 on loopback. Source it (`. scripts/ci-cluster-services.sh`):
# it exports SWEEP_TEST_PG_URL and SWEEP_TEST_SLURM=1 when the services came up. Idempotent, needs root;
# a service that cannot start is reported and its tests skip (they print why).
# Known to work with Debian's Slurm 22.05: proctrack/linuxproc, task/none, no cgroup.conf.

cluster_services() {
  local pkgs=()
  command -v sbatch >/dev/null 2>&1 || pkgs+=(slurm-wlm)
  command -v munged >/dev/null 2>&1 || pkgs+=(munge)
  command -v pg_ctlcluster >/dev/null 2>&1 || pkgs+=(postgresql)
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "== installing: ${pkgs[*]}"
    (DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}") \
      || echo "warning: apt-get install ${pkgs[*]} failed; cluster tests will skip"
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "warning: not root; not starting munge/slurm/postgresql (cluster tests will skip)"
    return 0
  fi

  # --- PostgreSQL 15 on 127.0.0.1, password auth for a dedicated role.
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    local ver
    ver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
    if [ -n "$ver" ]; then
      pg_ctlcluster "$ver" main status >/dev/null 2>&1 || pg_ctlcluster "$ver" main start \
        || echo "warning: pg_ctlcluster $ver main start failed (see /var/log/postgresql/)"
      local i
      for i in $(seq 1 30); do
        su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
        sleep 0.5
      done
      if su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1; then
        su postgres -c "psql -qc \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='sweep') THEN CREATE ROLE sweep LOGIN CREATEDB PASSWORD 'sweep'; END IF; END\\\$\\\$;\"" >/dev/null
        su postgres -c "psql -qAtc \"SELECT 1 FROM pg_database WHERE datname='sweep_test'\"" | grep -q 1 \
          || su postgres -c "createdb -O sweep sweep_test"
        export SWEEP_TEST_PG_URL="postgres://sweep:sweep@127.0.0.1:5432/sweep_test"
        echo "== postgresql $ver up: SWEEP_TEST_PG_URL=$SWEEP_TEST_PG_URL"
      else
        echo "warning: postgresql did not answer; PostgreSQL tests will skip"
      fi
    fi
  fi

  # --- munged as the munge user from a fresh key.
  if command -v munged >/dev/null 2>&1; then
    if ! munge -n >/dev/null 2>&1; then
      mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
      chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
      chmod 0700 /etc/munge /var/lib/munge /var/log/munge
      chmod 0755 /run/munge
      chmod 0400 /etc/munge/munge.key
      su -s /bin/sh munge -c /usr/sbin/munged || echo "warning: munged did not start"
      sleep 1
    fi
  fi

  # --- single-node Slurm on localhost.
  if command -v slurmctld >/dev/null 2>&1 && munge -n >/dev/null 2>&1; then
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    cat > /etc/slurm/slurm.conf <<EOF
# Written by scripts/ci-cluster-services.sh: one node, no cgroups (CI).
ClusterName=sweepci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
KillWait=30
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    rm -f /etc/slurm/cgroup.conf
    if ! scontrol ping 2>/dev/null | grep -q UP; then
      slurmctld || echo "warning: slurmctld did not start (see /var/log/slurm/slurmctld.log)"
      sleep 2
    fi
    if ! pgrep -x slurmd >/dev/null 2>&1; then
      slurmd || echo "warning: slurmd did not start (see /var/log/slurm/slurmd.log)"
    fi
    local i
    for i in $(seq 1 30); do
      sinfo -h -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)' && break
      sleep 1
    done
    if sinfo -h -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
      export SWEEP_TEST_SLURM=1
      echo "== slurm up: $(sinfo -h -o '%P %D %t %c CPUs')"
    else
      echo "warning: the slurm node is not idle: $(sinfo 2>&1 | tail -2); Slurm tests will skip"
    fi
  fi
}

cluster_services
