# drill_plot.gp -- the timeline of bench/memory_drill.sh (issue 10, item 6), one row per mode:
# left, RSS in MiB against the budget and 1.1 x budget (with the cgroup's usage, and the memory
# account's bytes, bulwark_memory_reserved_bytes summed over consumers, where there are any) and
# the pressure level (0 low .. 3 critical, from /metrics) on the right axis; right, answers per
# second by HTTP status as the load generator got them, per 1 s (log scale). The grey band is the
# flood (requests due); the dashed line is where the load generator stopped waiting for answers.
#
#   gnuplot -e "out='x.svg'; budget=256; modes='process cgroup blinded'; dirs='d1 d2 d3'; \
#               heading='...'" bench/drill_plot.gp
#
# out ending in .png gives a PNG (pngcairo) instead of the SVG.
# Each dir holds rss.dat, cgroup.dat, reserved.dat, level.dat, answers.dat and plot_vars.gp from
# bench/drill_report.py summarize.
n = words(modes)
if (out[strlen(out)-2:] eq "png") {
  set terminal pngcairo size 1500,360*n enhanced font "sans,10" background rgb "white"
} else {
  set terminal svg size 1500,360*n dynamic enhanced font "sans,11" background rgb "white"
}
set output out
set multiplot layout n,2 title heading font ",13"
set datafile commentschars "#"
set grid lc rgb "#dddddd"
set xlabel "s since the flood started" offset 0,0.5
set key top right opaque box lc rgb "#cccccc" font ",9" samplen 2 spacing 0.9
set style line 1 lc rgb "#1f77b4" lw 2
set style line 2 lc rgb "#9467bd" lw 1.5
set style line 3 lc rgb "#d62728" lw 1.5 dt 2
set style line 4 lc rgb "#d62728" lw 1 dt 3
set style line 5 lc rgb "#ff7f0e" lw 1.5
set style line 6 lc rgb "#17becf" lw 1.5
do for [i=1:n] {
  d = word(dirs, i)
  m = word(modes, i)
  load d."/plot_vars.gp"
  set xrange [-2:after_t + 0.5]
  set object 1 rect from 0, graph 0 to flood, graph 1 fc rgb "#eeeeee" fs solid noborder behind
  set arrow 1 from end_t, graph 0 to end_t, graph 1 nohead dt 2 lc rgb "#888888"
  if (died_t >= 0) {
    set label 1 "node gone" at died_t, graph 0.93 left offset 0.5,0 tc rgb "#d62728"
    set arrow 2 from died_t, graph 0 to died_t, graph 1 nohead lw 2 lc rgb "#d62728"
  } else {
    unset label 1
    unset arrow 2
  }
  set title m.": memory against the budget (".sprintf("%.0f", budget)." MiB)"
  set ylabel "MiB"
  set yrange [0:*]
  set ytics nomirror
  set y2range [-0.1:3.4]
  set y2tics ("low" 0, "medium" 1, "high" 2, "critical" 3)
  set y2label "pressure level"
  cmd = 'plot d."/rss.dat" u 1:2 w l ls 1 t "RSS"'
  if (has_cg) { cmd = cmd.', d."/cgroup.dat" u 1:2 w l ls 2 t "cgroup usage"' }
  if (has_reserved) { cmd = cmd.', d."/reserved.dat" u 1:2 w l ls 6 t "reserved (account)"' }
  cmd = cmd.', budget w l ls 3 t "budget", 1.1*budget w l ls 4 t "1.1 × budget"'
  cmd = cmd.', d."/level.dat" u 1:2 axes x1y2 w steps ls 5 t "pressure level"'
  eval cmd

  unset y2tics
  unset y2label
  unset label 1
  unset arrow 2
  set title m.": answers per second by HTTP status (load generator)"
  set ylabel "answers/s"
  set logscale y
  set yrange [0.8:*]
  # points as well as lines: a status seen in one bucket only has no line to draw
  plot d."/answers.dat" u 1:2 w lp lw 2 pt 7 ps 0.5 lc rgb "#2ca02c" t "2xx", \
       "" u 1:3 w lp lw 1.5 pt 7 ps 0.5 lc rgb "#ff7f0e" t "503", \
       "" u 1:4 w lp lw 1.5 pt 7 ps 0.5 lc rgb "#d62728" t "504", \
       "" u 1:5 w lp lw 1.5 pt 7 ps 0.5 lc rgb "#7f7f7f" t "other", \
       "" u 1:6 w lp lw 1.5 pt 7 ps 0.5 lc rgb "#000000" t "transport error"
  unset logscale y
  unset object 1
  unset arrow 1
}
unset multiplot
