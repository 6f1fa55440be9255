"""Layer 2 of the clustered mesh's fault tests (cluster-design.md §4): agents, featbit-sim and SDK probes in network
namespaces, faults by nft, iptables NFQUEUE (delay), tc tbf, signals, tmpfs and clocks. Entry points:
scripts/fault-suite and scripts/fault-soak."""
