# bash completion for cashpayctl(1)

_cashpayctl()
{
        local cur prev words cword
        _init_completion || return

        local commands="orders show deliveries events fulfil review-done sign send
                migrate check-config prune charge api sync reconcile help"
        local common="--config --db --json --help"
        local statuses="INITIATED CAPTURED FAILED"
        local outcomes="applied duplicate stale conflict invalid unauthorized forbidden
                unconfirmed deferred"

        case $prev in
        --config)
                _filedir conf
                return
                ;;
        --db)
                _filedir db
                return
                ;;
        --cacert)
                _filedir
                return
                ;;
        --status)
                COMPREPLY=($(compgen -W "$statuses" -- "$cur"))
                return
                ;;
        --outcome)
                COMPREPLY=($(compgen -W "$outcomes" -- "$cur"))
                return
                ;;
        --limit | --after | --days | --amount | --timestamp | --id | --charge | \
        --currency | --description | --order-ref | --url | --timeout)
                return
                ;;
        esac

        # The command is the first word that is not an option or an option's value.
        local i command=""
        for ((i = 1; i < cword; i++)); do
                case ${words[i]} in
                --config | --db)
                        ((i++))
                        ;;
                -*) ;;
                *)
                        command=${words[i]}
                        break
                        ;;
                esac
        done

        if [[ -z $command ]]; then
                if [[ $cur == -* ]]; then
                        COMPREPLY=($(compgen -W "$common --version" -- "$cur"))
                else
                        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
                fi
                return
        fi

        local opts=""
        case $command in
        orders) opts="--status --unfulfilled --review --limit" ;;
        deliveries) opts="--outcome --limit" ;;
        events) opts="--after --charge --follow" ;;
        sign) opts="--timestamp --id" ;;
        send) opts="--status --charge --amount --currency --description --order-ref --url --cacert --timeout" ;;
        prune) opts="--days --dry-run" ;;
        reconcile) opts="--dry-run" ;;
        charge)
                if [[ $cur != -* ]]; then
                        COMPREPLY=($(compgen -W "create" -- "$cur"))
                        return
                fi
                opts="--order-ref --amount --currency --description"
                ;;
        api)
                if [[ $cur != -* ]]; then
                        COMPREPLY=($(compgen -W "check" -- "$cur"))
                        return
                fi
                ;;
        help)
                COMPREPLY=($(compgen -W "$commands" -- "$cur"))
                return
                ;;
        esac
        if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$opts $common" -- "$cur"))
        fi
}
complete -F _cashpayctl cashpayctl
