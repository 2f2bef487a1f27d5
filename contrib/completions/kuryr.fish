# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_kuryr_global_optspecs
    string join \n log-format= h/help V/version
end

function __fish_kuryr_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_kuryr_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_kuryr_using_subcommand
    set -l cmd (__fish_kuryr_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c kuryr -n "__fish_kuryr_needs_command" -l log-format -d 'Log format: text or json' -r
complete -c kuryr -n "__fish_kuryr_needs_command" -s h -l help -d 'Print help'
complete -c kuryr -n "__fish_kuryr_needs_command" -s V -l version -d 'Print version'
complete -c kuryr -n "__fish_kuryr_needs_command" -f -a "serve" -d 'Serve the plugin protocol to Docker'
complete -c kuryr -n "__fish_kuryr_needs_command" -f -a "doctor" -d 'Check the set-up (config, Neutron, extensions, agent, Docker, firewall) and say how to fix what is wrong; exits non-zero when a check fails'
complete -c kuryr -n "__fish_kuryr_needs_command" -f -a "gc" -d 'Find what kuryr left behind on this host and in Neutron; --apply removes it'
complete -c kuryr -n "__fish_kuryr_needs_command" -f -a "inspect" -d 'Show what Neutron gives a container on each kuryr network: port, addresses, security groups, QoS policy, floating IPs (a Docker container by name or id, a CNI container by its id)'
complete -c kuryr -n "__fish_kuryr_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kuryr -n "__fish_kuryr_using_subcommand serve" -l config-file -d 'kuryr.conf (the reference implementation\'s INI file)' -r -F
complete -c kuryr -n "__fish_kuryr_using_subcommand serve" -l discovery-dir -d 'Write the Docker discovery file for the TCP listener here (`kuryr.spec`, or `kuryr.json` with TLS), e.g. /etc/docker/plugins; removed at exit' -r -F
complete -c kuryr -n "__fish_kuryr_using_subcommand serve" -l log-format -d 'Log format: text or json' -r
complete -c kuryr -n "__fish_kuryr_using_subcommand serve" -s h -l help -d 'Print help'
complete -c kuryr -n "__fish_kuryr_using_subcommand doctor" -l config-file -d 'kuryr.conf (the reference implementation\'s INI file)' -r -F
complete -c kuryr -n "__fish_kuryr_using_subcommand doctor" -l plugin -d 'Plugin name Docker uses (default: from unix_socket, else kuryr)' -r
complete -c kuryr -n "__fish_kuryr_using_subcommand doctor" -l docker-socket -d 'Docker\'s API socket (a path or unix://path); DOCKER_HOST as for the docker CLI' -r -F
complete -c kuryr -n "__fish_kuryr_using_subcommand doctor" -l log-format -d 'Log format: text or json' -r
complete -c kuryr -n "__fish_kuryr_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c kuryr -n "__fish_kuryr_using_subcommand gc" -l config-file -d 'kuryr.conf (the reference implementation\'s INI file)' -r -F
complete -c kuryr -n "__fish_kuryr_using_subcommand gc" -l docker-socket -d 'Docker\'s API socket (a path or unix://path); DOCKER_HOST as for the docker CLI' -r -F
complete -c kuryr -n "__fish_kuryr_using_subcommand gc" -l grace-seconds -d 'Leave reservations and pools younger than this many seconds alone' -r
complete -c kuryr -n "__fish_kuryr_using_subcommand gc" -l log-format -d 'Log format: text or json' -r
complete -c kuryr -n "__fish_kuryr_using_subcommand gc" -l apply -d 'Remove what was found'
complete -c kuryr -n "__fish_kuryr_using_subcommand gc" -s h -l help -d 'Print help'
complete -c kuryr -n "__fish_kuryr_using_subcommand inspect" -l config-file -d 'kuryr.conf (the reference implementation\'s INI file)' -r -F
complete -c kuryr -n "__fish_kuryr_using_subcommand inspect" -l docker-socket -d 'Docker\'s API socket (a path or unix://path); DOCKER_HOST as for the docker CLI' -r -F
complete -c kuryr -n "__fish_kuryr_using_subcommand inspect" -l log-format -d 'Log format: text or json' -r
complete -c kuryr -n "__fish_kuryr_using_subcommand inspect" -l json -d 'Print JSON'
complete -c kuryr -n "__fish_kuryr_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c kuryr -n "__fish_kuryr_using_subcommand help; and not __fish_seen_subcommand_from serve doctor gc inspect help" -f -a "serve" -d 'Serve the plugin protocol to Docker'
complete -c kuryr -n "__fish_kuryr_using_subcommand help; and not __fish_seen_subcommand_from serve doctor gc inspect help" -f -a "doctor" -d 'Check the set-up (config, Neutron, extensions, agent, Docker, firewall) and say how to fix what is wrong; exits non-zero when a check fails'
complete -c kuryr -n "__fish_kuryr_using_subcommand help; and not __fish_seen_subcommand_from serve doctor gc inspect help" -f -a "gc" -d 'Find what kuryr left behind on this host and in Neutron; --apply removes it'
complete -c kuryr -n "__fish_kuryr_using_subcommand help; and not __fish_seen_subcommand_from serve doctor gc inspect help" -f -a "inspect" -d 'Show what Neutron gives a container on each kuryr network: port, addresses, security groups, QoS policy, floating IPs (a Docker container by name or id, a CNI container by its id)'
complete -c kuryr -n "__fish_kuryr_using_subcommand help; and not __fish_seen_subcommand_from serve doctor gc inspect help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
