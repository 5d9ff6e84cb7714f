# Sky positions of a clred catalog (RA, DEC columns) against a simulator
# stars.csv (id,ra,dec,...): for each unflagged source with FLUX/FLUX_ERR >= 20
# the distance to its nearest star; prints how many sources there were, how
# many lie within 0.1 arcsec, and the RMS (arcsec) of those.
BEGIN { FS = "," }
FNR == 1 { for (i = 1; i <= NF; i++) col[FILENAME, $i] = i; next }
FILENAME == ref { n++; ra[n] = $2; dec[n] = $3; next }
{
    if ($col[FILENAME, "FLAGS"] != 0 || $col[FILENAME, "FLUX"] < 20 * $col[FILENAME, "FLUX_ERR"]) next
    r = $col[FILENAME, "RA"]; d = $col[FILENAME, "DEC"]; c = cos(d * 3.14159265358979 / 180); best = 1e9
    for (k = 1; k <= n; k++) { dx = (ra[k] - r) * c * 3600; dy = (dec[k] - d) * 3600; s = dx * dx + dy * dy; if (s < best) best = s }
    total++
    if (best < 0.01) { m++; sum += best }
}
END { printf "%d %d %.4f\n", total, m, m ? sqrt(sum / m) : -1 }
