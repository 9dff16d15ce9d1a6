from minicontainer.cli import main

main()
