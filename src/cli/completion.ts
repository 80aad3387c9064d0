/**
 * `outpost completion bash|zsh|fish`: a completion script made from the
 * command table itself (commands, subcommands, each command's options),
 * with host names from `outpost hosts list --names` (aliases and @groups).
 *
 *     source <(outpost completion bash)            # ~/.bashrc
 *     source <(outpost completion zsh)             # ~/.zshrc
 *     outpost completion fish > ~/.config/fish/completions/outpost.fish
 */
import type { Command } from 'commander';
import { UsageError } from './errors.js';

interface Spec {
  name: string;
  description: string;
  options: { long: string; short?: string; description: string }[];
  subcommands: string[];
}

function specs(program: Command): Spec[] {
  return program.commands.map((c) => ({
    name: c.name(),
    description: c.description(),
    options: c.options
      .filter((o) => o.long)
      .map((o) => ({ long: o.long!, ...(o.short ? { short: o.short } : {}), description: o.description })),
    subcommands: c.commands.map((s) => s.name()),
  }));
}

const HOSTS = 'outpost hosts list --names 2>/dev/null';

export function bashScript(program: Command): string {
  const list = specs(program);
  const cases = list
    .map((s) => {
      const words = s.options.flatMap((o) => (o.short ? [o.short, o.long] : [o.long]));
      return `    ${s.name}) subs="${s.subcommands.join(' ')}" words="${words.join(' ')}" ;;`;
    })
    .join('\n');
  return `# outpost completion for bash (and zsh through bashcompinit)
_outpost() {
  local cur=\${COMP_WORDS[COMP_CWORD]} words="" subs=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${list.map((s) => s.name).join(' ')}" -- "$cur"))
    return
  fi
  case \${COMP_WORDS[1]} in
${cases}
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$subs $(${HOSTS})" -- "$cur"))
  fi
}
complete -o default -F _outpost outpost
`;
}

function zshScript(program: Command): string {
  return `# outpost completion for zsh
autoload -U +X bashcompinit && bashcompinit
${bashScript(program)}`;
}

function fishScript(program: Command): string {
  const q = (t: string) => `'${t.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  const lines = ['# outpost completion for fish', 'complete -c outpost -f'];
  for (const s of specs(program)) {
    lines.push(`complete -c outpost -n __fish_use_subcommand -a ${s.name} -d ${q(s.description)}`);
    const when = `"__fish_seen_subcommand_from ${s.name}"`;
    for (const sub of s.subcommands) lines.push(`complete -c outpost -n ${when} -a ${sub}`);
    for (const o of s.options)
      lines.push(
        `complete -c outpost -n ${when} -l ${o.long.replace(/^--/, '')}${o.short ? ` -s ${o.short.replace(/^-/, '')}` : ''} -d ${q(o.description)}`,
      );
  }
  lines.push(`complete -c outpost -n "not __fish_use_subcommand" -a "(${HOSTS})"`);
  return `${lines.join('\n')}\n`;
}

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script (bash, zsh or fish)')
    .argument('<shell>', 'bash, zsh or fish')
    .addHelpText(
      'after',
      `
Examples:
  outpost completion bash > ~/.local/share/bash-completion/completions/outpost
  source <(outpost completion bash)                                   # in ~/.bashrc
  source <(outpost completion zsh)                                    # in ~/.zshrc
  outpost completion fish > ~/.config/fish/completions/outpost.fish`,
    )
    .action((shell: string) => {
      const make = { bash: bashScript, zsh: zshScript, fish: fishScript }[shell.toLowerCase()];
      if (!make) throw new UsageError(`completion: "${shell}" must be bash, zsh or fish`);
      process.stdout.write(make(program));
    });
}
